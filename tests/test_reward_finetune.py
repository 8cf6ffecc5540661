"""AnimeReward's fidelity pieces on tiny: keyframes, the Idefics2 smoothness tower, per-dimension
fine-tuning (separate learning rates, layer freezing), the character gallery and its round trip."""

import re

import pytest
import torch
import torch.nn.functional as F
from django.core.management.base import CommandError

from labelhub.dimensions import DIMENSION_KEYS
from scoring.anime_reward.config import RewardTrainConfig
from scoring.anime_reward.frames import iter_decoded_batches
from scoring.anime_reward.models import (
    AnimeReward,
    colour_jitter,
    mask_solidity,
    select_keyframes,
)
from scoring.anime_reward.synthetic import make_gallery, make_rule_clips
from scoring.anime_reward.train import train_reward
from scoring.management.commands.train_reward import parse_overrides
from tests.reward_data import reward_items

pytestmark = pytest.mark.usefixtures("two_threads")  # tests/conftest.py


def test_keyframes_are_the_first_frame_and_the_largest_changes_in_time_order():
    frames = torch.zeros(2, 8, 3, 16, 16, dtype=torch.uint8)
    frames[0, 3:] = 100  # a cut at 3
    frames[0, 6:] = 250  # and at 6
    frames[1, 5:] = 80
    mask = torch.ones(2, 8, dtype=torch.bool)
    mask[1, 6:] = False  # clip 1 has 6 real frames
    picked = select_keyframes(frames, mask, 3)
    assert picked[0].tolist() == [0, 3, 6]
    assert {0, 5} <= set(picked[1].tolist()) and int(picked[1].max()) < 6  # no padded frame
    assert picked[1].tolist() == sorted(picked[1].tolist())
    assert select_keyframes(frames, mask, 20).shape == (2, 8)  # K is capped at T


def test_full_preset_fine_tunes_the_seeds_dimensions_by_default():
    full = RewardTrainConfig(preset="full")
    assert full.finetuned_dimensions() == (
        "visual_smoothness",
        "text_consistency",
        "image_consistency",
    )
    assert RewardTrainConfig().finetuned_dimensions() == ()
    assert RewardTrainConfig(finetune_encoders=True).finetuned_dimensions() == DIMENSION_KEYS
    assert RewardTrainConfig(finetune_encoders=["visual_motion"]).finetuned_dimensions() == (
        "visual_motion",
    )
    with pytest.raises(ValueError, match="finetune_encoders"):
        RewardTrainConfig(finetune_encoders=["beauty"])
    with pytest.raises(ValueError, match="idefics"):
        RewardTrainConfig(encoder_sources={"idefics": "x"})


def test_settings_can_differ_per_dimension_and_bad_ones_are_named():
    config = RewardTrainConfig(
        encoder_learning_rate=3e-4,
        dimension_overrides={
            "text_consistency": {"encoder_learning_rate": 1e-3},
            "character_consistency": {"contrastive_weight": 3},
        },
    )
    assert config.for_dimension("text_consistency", "encoder_learning_rate") == 1e-3
    assert config.for_dimension("visual_motion", "encoder_learning_rate") == 3e-4
    assert config.for_dimension("character_consistency", "contrastive_weight") == 3
    assert config.for_dimension("text_consistency", "contrastive_weight") == 1.0
    for bad, message in (
        ({"beauty": {"learning_rate": 1}}, "unknown dimension 'beauty'"),
        ({"text_consistency": {"batch_size": 3}}, "'batch_size' cannot be set per dimension"),
        ({"text_consistency": {"epochs": 2.5}}, "must be a whole number >= 1"),
        ({"text_consistency": {"epochs": 0}}, "must be a whole number >= 1"),
        ({"text_consistency": {"learning_rate": 0}}, "must be > 0"),
        ({"text_consistency": {"contrastive_weight": -1}}, "must be >= 0"),
        ({"text_consistency": {"learning_rate": float("inf")}}, "must be a number"),
        ({"text_consistency": {"learning_rate": "fast"}}, "must be a number"),
        ({"text_consistency": 1e-3}, "must be {setting: value}"),
        (["text_consistency"], "must map dimension keys"),
    ):
        with pytest.raises(ValueError, match=re.escape(message)):
            RewardTrainConfig(dimension_overrides=bad)
    with pytest.raises(ValueError, match="contrastive_jitter"):
        RewardTrainConfig(contrastive_jitter=1.5)


def test_colour_jitter_changes_brightness_and_tint_within_bounds():
    torch.manual_seed(0)
    images = torch.full((64, 3, 8, 8), 0.5)
    jittered = colour_jitter(images, 0.4)
    assert jittered.shape == images.shape and 0 <= jittered.min() and jittered.max() <= 1
    per_image = jittered.mean((2, 3))  # (N, 3): 0.5 * scale + shift
    assert per_image.min() >= 0.5 * 0.6 - 0.1 - 1e-6 and per_image.max() <= 0.5 * 1.4 + 0.1 + 1e-6
    assert per_image.std(0).min() > 0.02  # images differ from each other, channel by channel
    assert torch.allclose(jittered.std((2, 3)), torch.zeros(64, 3))  # flat images stay flat


def test_the_train_reward_command_reads_per_dimension_settings():
    assert parse_overrides(
        [
            "text_consistency.encoder_learning_rate=1e-3",
            "character_consistency.contrastive_weight=3",
        ]
    ) == {
        "text_consistency": {"encoder_learning_rate": 1e-3},
        "character_consistency": {"contrastive_weight": 3.0},
    }
    for bad in ("text_consistency=1", "text_consistency.encoder_learning_rate", "a.b=fast"):
        with pytest.raises(CommandError, match="--set"):
            parse_overrides([bad])


def test_smoothness_uses_the_idefics2_vision_transformer_and_layers_can_be_frozen():
    model = AnimeReward.from_preset("tiny")
    smooth = model.dimensions["visual_smoothness"]
    assert type(smooth.idefics2).__name__ == "Idefics2VisionTransformer"
    smooth.unshare_encoders(frozen_layers=1)
    tower = smooth.idefics2
    assert tower is not model.encoders.idefics2  # its own copy
    assert not any(p.requires_grad for p in tower.embeddings.parameters())
    assert not any(p.requires_grad for p in tower.encoder.layers[0].parameters())
    assert all(p.requires_grad for p in tower.encoder.layers[1].parameters())
    assert not any(p.requires_grad for p in model.encoders.idefics2.parameters())


@pytest.mark.slow
def test_fine_tuning_trains_encoders_and_the_gallery_round_trips(tmp_path):
    gallery = make_gallery(tmp_path / "gallery")
    items = reward_items(make_rule_clips(tmp_path / "clips", 16, seed=1))
    tuned = ("visual_smoothness", "text_consistency", "character_consistency")
    result = train_reward(
        items,
        RewardTrainConfig(
            epochs=2,
            decode_workers=1,
            finetune_encoders=tuned,
            encoder_learning_rate=1e-3,
            encoder_frozen_layers=1,
            # text's towers get a learning rate too small to move them: the override applies
            # and it trains for 3 epochs where the others train for 2
            dimension_overrides={"text_consistency": {"encoder_learning_rate": 1e-12, "epochs": 3}},
        ),
        tmp_path / "model",
        gallery=gallery,
    )
    assert result.train_clips == 12 and result.test_clips == 4
    assert len(result.losses["text_consistency"]) == 3
    assert {len(result.losses[k]) for k in DIMENSION_KEYS if k != "text_consistency"} == {2}
    for key in tuned:
        config = (tmp_path / "model" / key / "config.json").read_text()
        assert "finetuned_encoders" in config
    # character fine-tunes BLIP only; the others their own towers
    assert (tmp_path / "model" / "character_consistency" / "blip.safetensors").exists()
    assert not (tmp_path / "model" / "character_consistency" / "sam.safetensors").exists()
    assert (tmp_path / "model" / "visual_smoothness" / "idefics2.safetensors").exists()
    assert not (tmp_path / "model" / "visual_appeal" / "clip.safetensors").exists()

    fresh = AnimeReward.from_preset("tiny")
    reloaded = AnimeReward.load(tmp_path / "model")
    assert sorted(reloaded.gallery) == sorted(gallery)
    changed = reloaded.dimensions["visual_smoothness"].idefics2.encoder.layers[1]
    same = reloaded.dimensions["visual_smoothness"].idefics2.encoder.layers[0]
    base = fresh.encoders.idefics2.encoder
    assert not torch.equal(
        changed.mlp.fc1.weight, base.layers[1].mlp.fc1.weight
    )  # the trainable layer moved
    assert torch.equal(same.mlp.fc1.weight, base.layers[0].mlp.fc1.weight)  # frozen layer did not
    text_tower = reloaded.dimensions["text_consistency"].clip.vision_model.encoder.layers[1]
    base_text = fresh.encoders.clip.vision_model.encoder.layers[1]
    assert (text_tower.mlp.fc1.weight - base_text.mlp.fc1.weight).abs().max() < 1e-8

    test_items = [i for i in items if i.split == "test"]
    batch = next(
        iter_decoded_batches([i.spec for i in test_items], size=64, batch_size=4, workers=1)
    )
    assert batch.inputs.character_ids == [i.character_id for i in test_items]
    scores = reloaded.score_batch(batch.inputs)
    by_clip = {row["clip_id"]: row["predicted"] for row in result.evaluation}
    for row, item in enumerate(test_items):
        for key in (*DIMENSION_KEYS, "overall"):
            assert scores[key][row].item() == pytest.approx(by_clip[item.clip_id][key], abs=1e-4)


def test_character_score_compares_with_the_clips_gallery_character(tmp_path):
    gallery = make_gallery(tmp_path / "gallery")
    clips = make_rule_clips(tmp_path / "clips", 2, seed=4)
    model = AnimeReward.from_preset("tiny", gallery=gallery)
    specs = [i.spec for i in reward_items(clips)]
    batch = next(iter_decoded_batches(specs, size=64, batch_size=2, workers=1))
    character = model.dimensions["character_consistency"]
    crops = character.track(batch.inputs)
    sims, _, _ = character.compare(crops)
    features = character.gallery_features([clips[0].character_id])[clips[0].character_id]
    crop = character.embed(crops.crops[0, 3, 1][None].float() / 255)[0]
    assert sims[0, 3, 1].item() == pytest.approx(float(crop @ features), abs=1e-5)
    with pytest.raises(ValueError, match="not in the gallery"):
        train_reward(reward_items(clips), RewardTrainConfig(epochs=1), tmp_path / "m", gallery={})


def test_mask_solidity_tells_regions_from_speckle_at_any_frame_size():
    for size in (64, 256):
        solid = torch.zeros(3, size, size, dtype=torch.bool)
        solid[0, size // 4 : size // 2, size // 8 : size // 2] = True  # a box
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        solid[1] = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 5) ** 2  # a disk
        solid[2] = True
        cell = size // 16  # a checkerboard of 16 x 16 cells, as random tiny SAM gives
        speckle = ((yy // cell + xx // cell) % 2 == 0)[None]
        assert mask_solidity(solid).min() > 0.9
        assert mask_solidity(speckle).max() < 0.1


def test_mask_solidity_is_the_share_a_max_pooling_opening_keeps():
    """The shifted-boolean opening equals the textbook one (erode = min pool, dilate = max pool,
    5 x 5 square, nothing counted past the frame's edge) on random masks, edges included."""
    torch.manual_seed(0)
    masks = torch.rand(2, 5, 64, 64) > torch.rand(2, 5, 1, 1)  # sparse to dense
    masks[0, 0] = False
    masks[0, 1] = False
    masks[0, 1, :20, -30:] = True  # a block on the corner
    x = masks.flatten(0, 1)[:, None].float()
    eroded = 1 - F.max_pool2d(1 - x, 5, 1, 2)
    opened = F.max_pool2d(eroded, 5, 1, 2) * x
    expected = opened.flatten(1).sum(1) / x.flatten(1).sum(1).clamp(min=1)
    assert torch.equal(mask_solidity(masks).flatten(), expected)
    assert mask_solidity(masks)[0, 1] > 0.9 and mask_solidity(masks)[0, 0] == 0


def test_text_contrastive_loss_pulls_a_matching_video_to_its_own_prompt():
    model = AnimeReward.from_preset("tiny")
    text = model.dimensions["text_consistency"]
    dim = model.encoders.clip.config.projection_dim
    a, b = torch.nn.functional.normalize(torch.randn(2, dim), dim=-1)
    prompts = ["a red square", "a blue square"]

    def values(videos):
        video = torch.stack(videos)
        texts = torch.stack([a, b])
        return torch.cat([video, texts, video * texts, (video * texts).sum(-1, True)], -1)[:, None]

    weights = torch.ones(2)
    matched = text.contrastive_loss(values([a, b]), prompts, weights)
    swapped = text.contrastive_loss(values([b, a]), prompts, weights)
    assert matched < swapped
    # a clip that does not match its prompt (target 0) pushes its video away from that prompt
    assert text.contrastive_loss(values([b, a]), prompts, torch.tensor([0.0, 1.0])) > 0
    assert text.contrastive_loss(values([a, a]), ["same", "same"], weights).item() == 0.0
    # neither clip matches its prompt: sitting at its own prompt costs more than at the other
    mismatched = torch.zeros(2)
    near = text.contrastive_loss(values([a, b]), prompts, mismatched)
    away = text.contrastive_loss(values([b, a]), prompts, mismatched)
    assert near > away


def test_a_dimension_trains_the_same_alone_as_beside_the_others(tmp_path):
    """Each dimension draws its batch order and dropout from its own seed: retraining one
    dimension reproduces it, whichever dimensions train before it."""
    items = reward_items(make_rule_clips(tmp_path / "clips", 16, seed=2))
    results = {}
    for name, dimensions in (("alone", ("text_consistency",)), ("after", DIMENSION_KEYS)):
        results[name] = train_reward(
            items,
            RewardTrainConfig(
                epochs=3,
                decode_workers=1,
                dimensions=dimensions,
                seed=5,
                finetune_encoders=False,
            ),
            tmp_path / name,
            gallery=make_gallery(tmp_path / "gallery"),
        )
    alone, after = results["alone"], results["after"]
    assert alone.losses["text_consistency"] == pytest.approx(
        after.losses["text_consistency"], rel=1e-5
    )
    assert alone.metrics["text_consistency"]["mae"] == pytest.approx(
        after.metrics["text_consistency"]["mae"], rel=1e-5
    )
