"""The anisora preset: Bilibili's released AnimeReward loaded from replicas of the release's
folder (released file names, state-dict key names and shapes, small widths, random weights)
through the production loaders, and the release's preprocessing checked against hand-worked
values from reward/reward_infer.py."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from scoring.anime_reward.anisora import layout
from scoring.anime_reward.anisora import preprocess as pre
from scoring.anime_reward.anisora.checkpoints import CheckpointKeyError, read_release_state
from scoring.anime_reward.anisora.layout import ReleaseLayoutError, check_release_dir
from scoring.anime_reward.anisora.models import (
    ActionClip,
    BlipConsistency,
    CharacterRecogniser,
    Idefics2Regressor,
)
from scoring.anime_reward.anisora.reward import AnisoraReward, clip_tokenizer_from_bpe
from scoring.anime_reward.frames import NATIVE, DecodedClip, collate, read_clip_frames
from scoring.anime_reward.video import write_video
from tests import anisora_replica as replica

pytestmark = pytest.mark.usefixtures("two_threads")


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return replica.write_release(tmp_path_factory.mktemp("anisora") / "reward")


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sam") / "sam2.1-hiera-base-plus"
    replica.sam2(folder)
    return folder


@pytest.fixture(scope="module")
def model(release, sam_dir) -> AnisoraReward:
    return AnisoraReward.from_release(release, sam_source=str(sam_dir))


def fresh_copy(release: Path, tmp_path: Path) -> Path:
    """A copy of the replica without the safetensors conversions a load may have written."""
    root = tmp_path / "reward"
    shutil.copytree(release, root, ignore=shutil.ignore_patterns("checkpoint_0*.safetensors"))
    for converted in root.rglob("*.safetensors"):
        if converted.with_suffix(".pth").exists():
            converted.unlink()
    return root


# --- preprocessing, worked by hand from reward_infer.py ------------------------------------------


def test_frame_indices_of_200_and_20_frame_clips():
    # 200 > 24 frames: span = min(200, 144) = 144, step 144 / 24 = 6 -> 0, 6, ..., 138
    assert pre.release_frame_indices(200) == [0, 6, 12, 18, 24, 30, 36, 42, 48, 54, 60, 66,
                                              72, 78, 84, 90, 96, 102, 108, 114, 120, 126, 132, 138]  # fmt: skip
    # 20 <= 24 frames: every frame
    assert pre.release_frame_indices(20) == list(range(20))
    # 30 frames: step 30 / 24 = 1.25, truncated: 0, 1, 2, 3, 5, 6, 7, 8, 10, ...
    assert pre.release_frame_indices(30)[:9] == [0, 1, 2, 3, 5, 6, 7, 8, 10]
    # ActionCLIP's 8 of the sampled frames: linspace(0, n - 1, 8) truncated
    # 24: 0, 3.29, 6.57, 9.86, 13.14, 16.43, 19.71, 23; 20: 0, 2.71, 5.43, 8.14, 10.86, ...
    assert pre.motion_frame_indices(24) == [0, 3, 6, 9, 13, 16, 19, 23]
    assert pre.motion_frame_indices(20) == [0, 2, 5, 8, 10, 13, 16, 19]


def test_native_decoding_reads_the_release_frames_of_a_200_frame_clip(tmp_path):
    """Each frame's grey level is its index: the decoded frames are frames 0, 6, ..., 138 at
    the source size (not square)."""
    frames = np.zeros((200, 32, 48, 3), dtype=np.uint8)
    for i in range(200):
        frames[i] = i
    path = write_video(frames, tmp_path / "clip.mp4", fps=24)
    decoded = read_clip_frames(path, size=NATIVE)
    assert decoded.shape == (24, 3, 32, 48)
    levels = decoded.float().mean((1, 2, 3))
    assert levels.sub(torch.arange(0, 144, 6).float()).abs().max() < 2.5


def test_resize_and_normalisation_constants():
    # 224 px bicubic of a flat colour stays flat; then (x / 255 - mean) / std per channel
    image = torch.tensor([255, 0, 128], dtype=torch.uint8).view(3, 1, 1).expand(3, 90, 160)
    pixels = pre.key_pixels(image[None].contiguous())
    assert pixels.shape == (1, 3, 224, 224)
    # by hand: 0.51854534 / 0.26862954, -0.4578275 / 0.26130258, 0.09375005 / 0.27577711
    expected = [1.930336, -1.752097, 0.339949]
    for channel, value in enumerate(expected):
        assert pixels[0, channel].flatten().unique().tolist() == pytest.approx([value], abs=2e-6)
    # bicubic, not bilinear: PIL's bicubic overshoots at a hard edge (bilinear never does)
    edge = torch.zeros(3, 100, 100, dtype=torch.uint8)
    edge[:, :, 50:] = 200
    pixels = pre.key_pixels(edge[None])[0, 0] * 0.26862954 + 0.48145466
    assert pixels.max() * 255 > 200.5


def test_evaluation_prompt_text_and_the_0_100_scale():
    text = pre.evaluation_prompt("a cat jumps", 3)
    assert text.startswith(
        "\nSuppose you are an expert in judging and evaluating the quality of AI-generated videos,"
    )
    assert "in terms of clearness, resolution, brightness, and color\n" in text
    assert "the lowest 0 means Bad, the highest 100 means Perfect/Real" in text
    assert text.endswith(
        'For this video, the text prompt is "a cat jumps",\n'
        "all the frames of video are as follows:\n<image> <image> <image> "
    )
    assert pre.MOTION_PROMPTS == (
        "The protagonist has a large range of movement, such as running, jumping, dancing, or "
        "waving arms.",
        "The protagonist remain stationary in the video with no apparent movement.",
    )
    # 87.65432 -> round to 3 digits -> 87.654 -> / 100
    assert pre.regression_reward(87.65432) == pytest.approx(0.87654, abs=1e-12)


def test_clip_tokenizer_from_the_bpe_file(release):
    tokenizer = clip_tokenizer_from_bpe(release / layout.CLIP_BPE)
    # 256 bytes + their end-of-word forms + 9 merges + the two specials
    assert len(tokenizer) == 512 + 9 + 2
    ids = tokenizer(["the cat"])["input_ids"][0]
    assert tokenizer.convert_ids_to_tokens(ids) == [
        "<|startoftext|>", "the</w>", "c", "a", "t</w>", "<|endoftext|>",
    ]  # fmt: skip
    assert ids[0] == 521 and ids[-1] == 522  # end of text is the largest id: CLIP pools there


# --- loading the replicas through the production path --------------------------------------------


def test_the_replica_loads_and_scores_one_clip_as_the_release(model):
    torch.manual_seed(0)
    frames = (torch.rand(24, 3, 48, 64) * 255).to(torch.uint8)
    condition = (torch.rand(3, 60, 80) * 255).to(torch.uint8)
    inputs = collate([DecodedClip(frames, condition, None)], ["a girl running"], native=True)
    rewards = model.score_batch(inputs)
    for key, value in rewards.items():
        assert value.shape == (1,) and 0.0 <= float(value) <= 1.0, key
    # the regressors' score head has bias 50 and small weights: about 50 / 100
    assert abs(float(rewards["visual_appeal"]) - 0.5) < 0.2


def test_blip_image_consistency_matches_the_release_vit(release, model):
    """Our BlipVisionModel mapping against BLIP's own ViT written from its checkpoint tensors
    (timm blocks: pre-norm, fused qkv, GELU MLP, LayerNorm eps 1e-6), then img_proj /
    img_key_proj / head_diff / sigmoid as BLIP_Pretrain.inference."""
    state = read_release_state(release / layout.IMAGE_CONSISTENCY_CKPT)
    torch.manual_seed(1)
    frames = torch.randn(5, 3, 224, 224)
    key = torch.randn(1, 3, 224, 224)

    def vit(x):
        p = "visual_encoder."
        x = F.conv2d(
            x,
            state[p + "patch_embed.proj.weight"],
            state[p + "patch_embed.proj.bias"],
            stride=replica.PATCH,
        )
        x = x.flatten(2).transpose(1, 2)
        x = (
            torch.cat([state[p + "cls_token"].expand(len(x), -1, -1), x], 1)
            + state[p + "pos_embed"]
        )
        width = x.shape[-1]
        for i in range(2):
            b = f"{p}blocks.{i}."
            h = F.layer_norm(x, (width,), state[b + "norm1.weight"], state[b + "norm1.bias"], 1e-6)
            q, k, v = F.linear(h, state[b + "attn.qkv.weight"], state[b + "attn.qkv.bias"]).chunk(
                3, -1
            )
            a = (q @ k.transpose(1, 2) / math.sqrt(width)).softmax(-1) @ v  # one 64-wide head
            x = x + F.linear(a, state[b + "attn.proj.weight"], state[b + "attn.proj.bias"])
            h = F.layer_norm(x, (width,), state[b + "norm2.weight"], state[b + "norm2.bias"], 1e-6)
            h = F.gelu(F.linear(h, state[b + "mlp.fc1.weight"], state[b + "mlp.fc1.bias"]))
            x = x + F.linear(h, state[b + "mlp.fc2.weight"], state[b + "mlp.fc2.bias"])
        return F.layer_norm(x, (width,), state[p + "norm.weight"], state[p + "norm.bias"], 1e-6)

    fea_1 = F.linear(
        vit(frames).mean(0, keepdim=True)[:, 0], state["img_proj.weight"], state["img_proj.bias"]
    )
    fea_2 = F.linear(vit(key)[:, 0], state["img_key_proj.weight"], state["img_key_proj.bias"])
    expected = torch.sigmoid(F.linear(torch.cat([fea_1, fea_2], -1), state["head_diff.weight"], state["head_diff.bias"]))[:, 0]  # fmt: skip
    with torch.no_grad():
        ours = model.image_consistency.score(frames, key)
    assert ours.item() == pytest.approx(expected.item(), abs=1e-5)


def test_actionclip_matches_the_openai_clip_layout(release, model):
    """CLIPModel + CLIPEncoder mapping against OpenAI CLIP's forward written from the tensors
    (conv1, class/positional embeddings, ln_pre, resblocks with nn.MultiheadAttention's fused
    in_proj and QuickGELU, ln_post @ proj) and ActionCLIP's adapter (+ residual, mean)."""
    s = read_release_state(release / layout.MOTION_CKPT)
    width = replica.WIDTH

    def blocks(x, prefix, n, causal=False):
        for i in range(n):
            b = f"{prefix}resblocks.{i}."
            h = F.layer_norm(x, (width,), s[b + "ln_1.weight"], s[b + "ln_1.bias"])
            mask = torch.full((x.shape[1], x.shape[1]), float("-inf")).triu(1) if causal else None
            attn = F.multi_head_attention_forward(
                h.transpose(0, 1), h.transpose(0, 1), h.transpose(0, 1), width, 1,
                s[b + "attn.in_proj_weight"], s[b + "attn.in_proj_bias"], None, None, False, 0.0,
                s[b + "attn.out_proj.weight"], s[b + "attn.out_proj.bias"], need_weights=False,
                attn_mask=mask,
            )[0].transpose(0, 1)  # fmt: skip
            x = x + attn
            h = F.layer_norm(x, (width,), s[b + "ln_2.weight"], s[b + "ln_2.bias"])
            h = F.linear(h, s[b + "mlp.c_fc.weight"], s[b + "mlp.c_fc.bias"])
            x = x + F.linear(h * torch.sigmoid(1.702 * h), s[b + "mlp.c_proj.weight"], s[b + "mlp.c_proj.bias"])  # fmt: skip
        return x

    torch.manual_seed(2)
    video = torch.randn(1, 8, 3, 224, 224)
    x = (
        F.conv2d(video[0], s["clip.visual.conv1.weight"], stride=replica.PATCH)
        .flatten(2)
        .transpose(1, 2)
    )
    x = (
        torch.cat([s["clip.visual.class_embedding"].expand(8, 1, -1), x], 1)
        + s["clip.visual.positional_embedding"]
    )
    x = F.layer_norm(x, (width,), s["clip.visual.ln_pre.weight"], s["clip.visual.ln_pre.bias"])
    x = blocks(x, "clip.visual.transformer.", 2)
    x = F.layer_norm(x[:, 0], (width,), s["clip.visual.ln_post.weight"], s["clip.visual.ln_post.bias"]) @ s["clip.visual.proj"]  # fmt: skip
    frames = x[None]
    t = frames + s["adapter.frame_position_embeddings.weight"][None]
    expected_video = (blocks(t, "adapter.transformer.", 1) + frames).mean(1)

    tokens = model.clip_tokenizer(["the cat and the dog"], return_tensors="pt")
    ids = tokens["input_ids"]
    e = s["clip.token_embedding.weight"][ids] + s["clip.positional_embedding"][: ids.shape[1]]
    e = blocks(e, "clip.transformer.", 2, causal=True)
    e = F.layer_norm(e, (width,), s["clip.ln_final.weight"], s["clip.ln_final.bias"])
    expected_text = e[torch.arange(1), ids.argmax(-1)] @ s["clip.text_projection"]
    with torch.no_grad():
        assert torch.allclose(model.motion.encode_video(video), expected_video, atol=1e-4)
        assert torch.allclose(model.motion.encode_text(dict(tokens)), expected_text, atol=1e-4)


def test_regressor_output_is_the_score_head_on_the_last_token_divided_by_100(
    release, sam_dir, tmp_path
):
    root = fresh_copy(release, tmp_path)
    folder = root / layout.QUALITY_DIR
    state = load_file(str(folder / "model.safetensors"))
    state["score.weight"] = torch.zeros_like(state["score.weight"])
    state["score.bias"] = torch.tensor([73.25])
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    model = AnisoraReward.from_release(root, sam_source=str(sam_dir))
    frames = torch.full((20, 3, 40, 40), 90, dtype=torch.uint8)
    inputs = collate([DecodedClip(frames, frames[0], None)], ["a cat"], native=True)
    assert float(model.score_batch(inputs)["visual_appeal"][0]) == pytest.approx(0.7325)


# --- a key missing from or extra in each released checkpoint: named in the error -------------------


def _edit_pth(path: Path, edit) -> None:
    checkpoint = torch.load(path, weights_only=True)
    entry = "model" if "model" in checkpoint else "state_dict"
    edit(checkpoint[entry])
    torch.save(checkpoint, path)


PTH_CASES = [
    (layout.IMAGE_CONSISTENCY_CKPT, "drop", "visual_encoder.blocks.1.attn.qkv.weight",
     lambda state, src: BlipConsistency.from_release(state, src, text=False)),
    (layout.IMAGE_CONSISTENCY_CKPT, "add", "head_extra.weight",
     lambda state, src: BlipConsistency.from_release(state, src, text=False)),
    (layout.TEXT_CONSISTENCY_CKPT, "drop", "text_encoder.encoder.layer.0.crossattention.self.key.bias",
     lambda state, src: BlipConsistency.from_release(state, src, text=True)),
    (layout.TEXT_CONSISTENCY_CKPT, "add", "text_encoder.pooler.dense.weight",
     lambda state, src: BlipConsistency.from_release(state, src, text=True)),
    (layout.MOTION_CKPT, "drop", "adapter.transformer.resblocks.0.ln_1.weight",
     ActionClip.from_release),
    (layout.MOTION_CKPT, "add", "clip.visual.extra_token",
     ActionClip.from_release),
    (layout.CHARACTER_CKPT, "drop", "vision_proj.bias", CharacterRecogniser.from_release),
    (layout.CHARACTER_CKPT, "add", "visual_encoder.blocks.0.attn.extra", CharacterRecogniser.from_release),
]  # fmt: skip


@pytest.mark.parametrize(("rel", "change", "key", "load"), PTH_CASES)
def test_a_missing_or_extra_key_names_the_key(release, tmp_path, rel, change, key, load):
    root = fresh_copy(release, tmp_path)
    path = root / rel

    def edit(state):
        if change == "drop":
            del state[key]
        else:
            state[key] = torch.zeros(3)

    _edit_pth(path, edit)
    with pytest.raises(CheckpointKeyError) as error:
        load(read_release_state(path), str(path))
    message = str(error.value)
    assert str(path) in message and repr(key) in message  # the key as the release names it


@pytest.mark.parametrize("folder", [layout.QUALITY_DIR, layout.SMOOTH_DIR])
@pytest.mark.parametrize("change", ["drop", "add"])
def test_a_regressor_key_missing_or_extra_names_the_key(release, tmp_path, folder, change):
    root = fresh_copy(release, tmp_path) / folder
    shard = sorted(root.glob("*.safetensors"))[0]
    state = load_file(str(shard))
    if change == "drop":
        key = next(k for k in sorted(state) if k.startswith("model.connector."))
        del state[key]
        expected = key.removeprefix("model.")
    else:
        key = expected = "model.text_model.extra.weight"
        state[key] = torch.zeros(2)
    save_file(state, str(shard), metadata={"format": "pt"})
    if (root / "model.safetensors.index.json").exists():
        import json

        index = json.loads((root / "model.safetensors.index.json").read_text())
        index["weight_map"].pop(key, None)
        if change == "add":
            index["weight_map"][key] = shard.name
        (root / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointKeyError) as error:
        Idefics2Regressor.from_folder(root)
    assert expected.split(".")[-2] in str(error.value) and str(root) in str(error.value)


def test_a_missing_released_file_is_named_at_launch(release, sam_dir, tmp_path):
    root = fresh_copy(release, tmp_path)
    check_release_dir(root, sam_source=str(sam_dir))
    (root / layout.MOTION_CKPT).unlink()
    (root / layout.QUALITY_DIR / "preprocessor_config.json").unlink()
    with pytest.raises(ReleaseLayoutError) as error:
        check_release_dir(root, sam_source=str(sam_dir))
    assert layout.MOTION_CKPT in str(error.value)
    assert f"{layout.QUALITY_DIR}/preprocessor_config.json" in str(error.value)
    with pytest.raises(ReleaseLayoutError, match="LABELHUB_ANISORA_REWARD_DIR is not set"):
        check_release_dir("", sam_source=str(sam_dir))
    with pytest.raises(ReleaseLayoutError, match="LABELHUB_REWARD_SOURCE_SAM"):
        check_release_dir(release, sam_source=str(tmp_path / "nowhere"))
    with pytest.raises(ReleaseLayoutError, match="testvl-pre76-top187-rec69.pth"):
        AnisoraReward.from_release(root, sam_source=str(sam_dir))


def test_pth_is_read_weights_only_and_kept_as_safetensors_beside(release, tmp_path):
    root = fresh_copy(release, tmp_path)
    path = root / layout.IMAGE_CONSISTENCY_CKPT
    first = read_release_state(path)
    converted = path.with_suffix(".safetensors")
    assert converted.is_file()
    path.unlink()  # later loads read the conversion
    again = read_release_state(path)
    assert set(again) == set(first) and all(torch.equal(again[k], first[k]) for k in first)
    # a release file replaced after the conversion is read (and converted) again
    replaced = {k: v + 1 if v.is_floating_point() else v for k, v in first.items()}
    torch.save({"model": replaced}, path)
    import os

    os.utime(path, (converted.stat().st_mtime + 10, converted.stat().st_mtime + 10))
    fresh = read_release_state(path)
    assert all(torch.equal(fresh[k], replaced[k]) for k in first)
    assert not list(converted.parent.glob("*.partial"))

    class Payload:  # anything but tensors and plain containers is refused, never run
        def __reduce__(self):
            return (print, ("unpickled code ran",))

    hostile = root / layout.MOTION_CKPT
    torch.save({"state_dict": {"x": torch.zeros(1)}, "meta": Payload()}, hostile)
    with pytest.raises(ReleaseLayoutError, match="weights_only"):
        read_release_state(hostile)


def test_character_consistency_prefers_the_clip_s_own_gallery_character(model):
    """The recogniser's score is the best gallery character's softmax probability: a gallery of
    the clip's own crops beats one of unrelated images."""
    torch.manual_seed(5)
    frames = torch.zeros(24, 3, 64, 64, dtype=torch.uint8)
    frames[:, 0] = 200
    frames[:, :, 16:48, 20:44] = torch.tensor([30, 200, 60], dtype=torch.uint8).view(3, 1, 1)
    condition = frames[0].clone()
    score = model.character_reward(frames, condition, None)
    assert 0.0 <= score <= 1.0
    # a one-character gallery: softmax over one name is 1 for any tracked character
    model.set_gallery({"only": [Image.fromarray(np.full((32, 32, 3), 7, np.uint8))]})
    try:
        assert model.character_reward(frames, condition, None) in (0.0, pytest.approx(1.0))
    finally:
        model.gallery = {}


def labelled_items(tmp_path: Path, *, seed: int) -> tuple[list, list]:
    """Six synthetic labelled clips as trainer items: clips 0 and 1 held out."""
    from scoring.anime_reward.synthetic import make_labelled_clips
    from scoring.anime_reward.train import RewardItem

    clips = make_labelled_clips(tmp_path / "clips", 6, seed=seed)
    items = [
        RewardItem(
            clip_id=c.index,
            video_path=str(c.video_path),
            condition_image_path=str(c.condition_image_path),
            prompt=c.prompt,
            labels=c.labels,
            split="test" if c.index < 2 else "train",
            condition_id=c.index,
        )
        for c in clips
    ]
    return clips, items


def assert_rescored_as_evaluated(model, clips, evaluation: list, key: str) -> None:
    """Each held-out clip scored by ``model`` gets what the trainer's evaluation recorded."""
    for row in evaluation:
        clip = next(c for c in clips if c.index == row["clip_id"])
        frames = read_clip_frames(clip.video_path, size=NATIVE)
        with Image.open(clip.condition_image_path) as image:
            condition = torch.from_numpy(np.asarray(image.convert("RGB")).copy()).permute(2, 0, 1)
        inputs = collate([DecodedClip(frames, condition, None)], [clip.prompt], native=True)
        scored = model.score_batch(inputs)
        assert float(scored[key][0]) == pytest.approx(row["predicted"][key], abs=1e-4)


def test_full_fine_tuning_trains_the_blip_model_and_reloads_it(release, sam_dir, tmp_path):
    """release_finetune="full": the image consistency model's ViT changes (L1 on its sigmoid),
    the frames wait on disk, and the saved model gives back the held-out predictions."""
    from scoring.anime_reward.anisora.train import train_anisora
    from scoring.anime_reward.config import RewardTrainConfig

    clips, items = labelled_items(tmp_path, seed=2)
    config = RewardTrainConfig(
        preset="anisora",
        release_dir=str(release),
        release_finetune="full",
        encoder_sources={"sam": str(sam_dir)},
        dimensions=("image_consistency",),
        epochs=2,
        batch_size=2,
        encoder_learning_rate=1e-3,
    )
    before = AnisoraReward.from_release(release, sam_source=str(sam_dir))
    result = train_anisora(items, config, tmp_path / "model")
    assert len(result["losses"]["image_consistency"]) == 2
    assert not (tmp_path / ".model-frames").exists()
    reloaded = AnisoraReward.load(tmp_path / "model")
    assert reloaded.tuned_models == ["image_consistency"]
    old = before.image_consistency.visual_encoder.state_dict()
    new = reloaded.image_consistency.visual_encoder.state_dict()
    assert any(not torch.equal(old[k], new[k]) for k in old)  # the ViT itself was trained
    assert all(
        torch.equal(a, b)
        for a, b in zip(
            before.text_consistency.state_dict().values(),
            reloaded.text_consistency.state_dict().values(),
            strict=True,
        )
    )  # not asked for: as released
    assert_rescored_as_evaluated(reloaded, clips, result["evaluation"], "image_consistency")


def test_lora_trains_adapters_on_a_regressor_and_reloads_it(release, sam_dir, tmp_path):
    """release_finetune="lora": peft adapters on the regressor's language model attention learn
    with its score head (regression on 0-100); the base weights stay as released; the adapters
    are saved beside the model and the reloaded model scores the held-out clips as in memory."""
    from scoring.anime_reward.anisora.train import train_anisora
    from scoring.anime_reward.config import RewardTrainConfig

    clips, items = labelled_items(tmp_path, seed=4)
    config = RewardTrainConfig(
        preset="anisora",
        release_dir=str(release),
        release_finetune="lora",
        release_lora_rank=4,
        encoder_sources={"sam": str(sam_dir)},
        dimensions=("visual_smoothness",),
        epochs=2,
        batch_size=2,
        encoder_learning_rate=1e-2,
    )
    model = AnisoraReward.from_release(release, sam_source=str(sam_dir))
    text_model = model.smoothness.model.text_model
    base = {k: v.clone() for k, v in model.smoothness.state_dict().items()}
    result = train_anisora(items, config, tmp_path / "model", model=model)
    assert len(result["losses"]["visual_smoothness"]) == 2
    assert set(result["metrics"]["visual_smoothness"]) >= {"pearson", "spearman", "mae"}
    assert not (tmp_path / ".model-frames").exists()
    lora = model.lora_state("visual_smoothness")
    targets = {"q_proj", "k_proj", "v_proj", "o_proj"}
    assert {k.split(".")[-4] for k in lora} == targets  # ...self_attn.q_proj.lora_A.default.weight
    assert any(k.endswith("lora_B.default.weight") and v.abs().sum() > 0 for k, v in lora.items())
    rank = next(v for k, v in lora.items() if "lora_A" in k).shape[0]
    assert rank == 4
    # the base weights (now under base_layer) are the released ones; the head was trained
    after = model.smoothness.state_dict()
    for key, value in base.items():
        if key.startswith("score."):
            continue
        name = key.replace(".weight", ".base_layer.weight") if key not in after else key
        assert torch.equal(after[name], value), key
    assert not torch.equal(after["score.weight"], base["score.weight"])
    assert all(p.requires_grad is False for p in text_model.parameters())
    # saved: the adapters and the head only, beside reward_config.json
    saved = load_file(str(tmp_path / "model" / "visual_smoothness" / "lora.safetensors"))
    assert set(saved) == set(lora)
    reloaded = AnisoraReward.load(tmp_path / "model")
    assert reloaded.lora == {"visual_smoothness": 4}
    assert not any("lora_" in k for k in reloaded.quality.state_dict())  # not asked for
    assert_rescored_as_evaluated(reloaded, clips, result["evaluation"], "visual_smoothness")


def test_release_lora_rank_is_validated():
    from scoring.anime_reward.config import RewardTrainConfig

    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="release_lora_rank"):
            RewardTrainConfig(preset="anisora", release_finetune="lora", release_lora_rank=bad)
    with pytest.raises(ValueError, match="release_finetune must be one of none, heads, full, lora"):
        RewardTrainConfig(preset="anisora", release_finetune="adapters")
