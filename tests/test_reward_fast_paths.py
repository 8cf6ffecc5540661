"""AnimeReward's scoring fast paths give the results of the plain ones: the character model tracks
``track_frames`` frames spread over the clip, SAM's upscaling layers are swapped for equivalent
faster ones, CPU pixels are shrunk as uint8, and CPU scoring gives torch half the cores while
clips decode beside it (bench/reward_throughput.py measures the speed; these check the results)."""

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers.models.sam.modeling_sam import SamLayerNorm

from scoring.anime_reward.config import PRESETS, RewardTrainConfig
from scoring.anime_reward.frames import (
    ClipSpec,
    cores_shared_with_decoding,
    iter_decoded_batches,
)
from scoring.anime_reward.models import (
    REWARD_CONFIG,
    AnimeReward,
    distinct_images,
    spread_frames,
    to_pixels,
)
from scoring.anime_reward.presets import ChannelsFirstLayerNorm, ConvTranspose2x2
from scoring.anime_reward.synthetic import make_rule_clips

pytestmark = pytest.mark.usefixtures("two_threads")  # tests/conftest.py


def test_spread_frames_takes_first_last_and_even_steps_and_masks_repeats():
    frames = torch.arange(2 * 24).view(2, 24, 1).expand(-1, -1, 3).clone()  # value = b*24 + t
    mask = torch.zeros(2, 24, dtype=torch.bool)
    mask[0] = True  # 24 real frames
    mask[1, :3] = True  # a 3-frame clip, padded
    picked, picked_mask = spread_frames(frames, mask, 8)
    assert picked.shape == (2, 8, 3)
    # clip 0: round(linspace(0, 23, 8)) = 0, 3, 7, 10, 13, 16, 20, 23
    assert picked[0, :, 0].tolist() == [0, 3, 7, 10, 13, 16, 20, 23]
    assert picked_mask[0].all()
    # clip 1: only frames 0..2 are real; repeats are masked out, padding is never picked
    assert set(picked[1, :, 0].tolist()) == {24, 25, 26}
    assert picked_mask[1].sum() == 3
    assert spread_frames(frames, mask, 0)[0] is frames  # 0 keeps every frame


def test_sam_upscaling_swaps_keep_the_weights_and_the_output():
    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(16, 4, kernel_size=2, stride=2)
    fast = ConvTranspose2x2(16, 4, 2, stride=2)
    fast.load_state_dict(conv.state_dict())
    x = torch.randn(5, 16, 7, 9)
    assert torch.allclose(fast(x), conv(x), atol=1e-6)
    norm = SamLayerNorm(4, data_format="channels_first")
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2)
        norm.bias.uniform_(-1, 1)
    fast_norm = ChannelsFirstLayerNorm(4, eps=norm.eps)
    fast_norm.load_state_dict(norm.state_dict())
    y = torch.randn(5, 4, 14, 18) * 3 + 1
    assert torch.allclose(fast_norm(y), norm(y), atol=1e-5)


def test_the_built_sam_uses_the_fast_layers_and_segments_as_before():
    model = AnimeReward.from_preset("tiny")
    sam = model.dimensions["character_consistency"].sam
    decoder = sam.mask_decoder
    assert isinstance(decoder.upscale_conv1, ConvTranspose2x2)
    assert isinstance(decoder.upscale_layer_norm, ChannelsFirstLayerNorm)
    torch.manual_seed(1)
    embeddings = torch.randn(3, *sam.get_image_wide_positional_embeddings().shape[1:])
    boxes = torch.tensor([[[4.0, 4.0, 40.0, 50.0]]]).expand(3, -1, -1)
    with torch.no_grad():
        fast = sam(image_embeddings=embeddings, input_boxes=boxes, multimask_output=False)
        # put HF's own layers back (same weights) and compare
        plain = {}
        for name in ("upscale_conv1", "upscale_conv2"):
            layer = getattr(decoder, name)
            plain[name] = nn.ConvTranspose2d(layer.in_channels, layer.out_channels, 2, stride=2)
            plain[name].load_state_dict(layer.state_dict())
        norm = SamLayerNorm(
            decoder.upscale_layer_norm.normalized_shape, data_format="channels_first"
        )
        norm.load_state_dict(decoder.upscale_layer_norm.state_dict())
        for name, layer in plain.items():
            setattr(decoder, name, layer)
        decoder.upscale_layer_norm = norm
        slow = sam(image_embeddings=embeddings, input_boxes=boxes, multimask_output=False)
    assert torch.allclose(fast.pred_masks, slow.pred_masks, atol=1e-5)


def test_cpu_pixels_shrink_as_uint8_within_one_level_of_the_float_path():
    torch.manual_seed(2)
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8)
    spec = PRESETS["tiny"].images["clip"]  # 32 px
    module = nn.Linear(1, 1)  # to_pixels only reads its device and dtype
    fast = to_pixels(images, spec, module)
    shrunk = F.interpolate(images.float(), size=(32, 32), mode="bilinear", antialias=True)
    mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.std).view(1, 3, 1, 1)
    plain = (shrunk / 255 - mean) / std
    assert fast.shape == plain.shape
    assert ((fast - plain).abs() * std * 255).max() <= 1.0 + 1e-4  # at most one grey level


def test_character_model_tracks_spread_frames_and_old_models_keep_every_frame(tmp_path):
    clips = make_rule_clips(tmp_path / "clips", 2, seed=3)  # 16 frames each
    specs = [
        ClipSpec(c.index, str(c.video_path), str(c.condition_image_path), c.prompt) for c in clips
    ]
    batch = next(iter_decoded_batches(specs, size=64, batch_size=2, workers=1))
    model = AnimeReward.from_preset("tiny")
    character = model.dimensions["character_consistency"]
    assert character.track_frames == PRESETS["tiny"].track_frames == 8
    crops = character.track(batch.inputs)
    assert crops.crops.shape[:3] == (2, 8, 2) and crops.frame_mask.all()
    # frame 0 is tracked either way, with the detection as its prompt: the same crop
    character.track_frames = 0
    every = character.track(batch.inputs)
    assert every.crops.shape[1] == batch.inputs.frames.shape[1] == 16
    same = (every.crops[:, 0].int() - crops.crops[:, 0].int()).abs() <= 1
    assert same.float().mean() > 0.99

    # saved with its setting; a model saved before the setting existed tracked every frame
    character.track_frames = 12
    folder = model.save(tmp_path / "model")
    assert AnimeReward.load(folder).dimensions["character_consistency"].track_frames == 12
    config = json.loads((folder / REWARD_CONFIG).read_text())
    del config["track_frames"]
    (folder / REWARD_CONFIG).write_text(json.dumps(config))
    assert AnimeReward.load(folder).dimensions["character_consistency"].track_frames == 0

    assert RewardTrainConfig(track_frames=0).track_frames == 0
    for bad in (1, -2):
        with pytest.raises(ValueError, match="track_frames must be 0"):
            RewardTrainConfig(track_frames=bad)


def test_cpu_scoring_gives_torch_half_the_cores_and_gives_them_back():
    import os

    cores = len(os.sched_getaffinity(0))
    previous = torch.get_num_threads()
    with cores_shared_with_decoding("cpu"):
        assert torch.get_num_threads() == max(1, min(previous, cores // 2))
    assert torch.get_num_threads() == previous
    with cores_shared_with_decoding("cuda"):  # a GPU: nothing to share
        assert torch.get_num_threads() == previous


def test_candidates_of_one_condition_are_detected_once():
    torch.manual_seed(3)
    a, b = (torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2))
    conditions = torch.stack([a, b, a, a, b])  # two conditions, five candidates
    assert distinct_images(conditions) == ([0, 1], [0, 1, 0, 0, 1])
    character = AnimeReward.from_preset("tiny").dimensions["character_consistency"]
    seen = []
    hook = character.grounding_dino.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(len(kwargs["pixel_values"])),
        with_kwargs=True,
    )
    boxes, keep = character.detect(conditions)
    hook.remove()
    assert seen == [2]  # GroundingDINO saw each distinct image once
    alone_boxes, alone_keep = character.detect(torch.stack([a, b]))
    assert torch.allclose(boxes, alone_boxes[[0, 1, 0, 0, 1]], atol=1e-5)
    assert torch.equal(keep, alone_keep[[0, 1, 0, 0, 1]])
