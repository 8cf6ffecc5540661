"""The full generator preset on a folder laid out as THUDM/CogVideoX-5b-I2V ships it (small
widths, random weights, a trained sentencepiece tokenizer): it loads through the production
``load_generator``, trains a GAPO step and generates with the release's sampler; wrong folders
fail at launch with what is wrong."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from scoring.anime_reward.video import write_video
from training.alignment.cogvideox import load_generator
from training.alignment.pairs import Pair
from training.alignment.release import GeneratorFolderError, check_generator_folder
from training.alignment.replica import REPLICA_VOCAB_PIECES, write_release_replica
from training.alignment.sampling import GenerationCondition, build_pipeline, generate_candidates
from training.alignment.trainer import TrainConfig, train


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release_replica(tmp_path_factory.mktemp("generator") / "CogVideoX-5b-I2V")


def test_the_replica_is_laid_out_as_the_release(release):
    files = sorted(str(p.relative_to(release)) for p in release.rglob("*") if p.is_file())
    assert "model_index.json" in files
    assert sorted(f for f in files if f.startswith("tokenizer/")) == [
        "tokenizer/special_tokens_map.json",
        "tokenizer/spiece.model",
        "tokenizer/tokenizer_config.json",
    ]
    # sharded like the hub folder: an index and its shards
    assert "transformer/diffusion_pytorch_model.safetensors.index.json" in files
    assert "text_encoder/model.safetensors.index.json" in files
    assert any(f.startswith("transformer/diffusion_pytorch_model-00001-of-") for f in files)
    assert check_generator_folder(str(release))["layers"] == 2


@pytest.mark.slow
def test_the_released_layout_loads_trains_a_gapo_step_and_generates(release, tmp_path):
    components = load_generator("cogvideox-5b-i2v", path=str(release))
    # The T5 tokenizer came from the trained sentencepiece model: T5's ids and extra ids.
    tokenizer = components.tokenizer
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert len(tokenizer) == REPLICA_VOCAB_PIECES + 100
    ids = tokenizer("a girl runs in the rain").input_ids
    assert ids[-1] == 1 and 2 not in ids  # every word known, </s> appended
    shape = components.shape
    assert (shape.frames, shape.height, shape.width, shape.sampler) == (9, 32, 48, "dpm")

    image = tmp_path / "first.png"
    Image.fromarray(np.full((shape.height, shape.width, 3), 120, np.uint8)).save(image)
    candidates = generate_candidates(
        components,
        [GenerationCondition("c1", "a girl runs in the rain", str(image))],
        candidates_per_condition=2,
        base_seed=0,
        out_dir=tmp_path / "videos",
        inference_steps=2,
    )
    assert [c.sampler for c in candidates] == ["dpm", "dpm"]
    pair = Pair(
        condition_id=1,
        winner_clip_id=1,
        loser_clip_id=2,
        winner_reward=0.9,
        loser_reward=0.2,
        winner_video=candidates[0].video,
        loser_video=candidates[1].video,
        prompt="a girl runs in the rain",
        first_frame=str(image),
    )
    result = train(
        TrainConfig(
            output_dir=str(tmp_path / "gapo"),
            preset="cogvideox-5b-i2v",
            model_path=str(release),
            lora_rank=4,
            max_steps=1,
            checkpoint_every=0,
        ),
        [pair],
        components=components,
    )
    assert result.steps == 1 and np.isfinite(result.metrics[0]["loss"])
    assert result.metrics[0]["gap"] == pytest.approx(2**0.9 - 2**0.2)
    # ... and the trained LoRA generates through diffusers' load_lora_weights
    again = generate_candidates(
        load_generator("cogvideox-5b-i2v", path=str(release)),
        [GenerationCondition("c1", "a girl runs in the rain", str(image))],
        candidates_per_condition=1,
        base_seed=0,
        out_dir=tmp_path / "policy",
        inference_steps=2,
        lora_dir=result.lora_dir,
    )
    assert len(again) == 1


def _copy(release, tmp_path, name="copy"):
    folder = tmp_path / name
    shutil.copytree(release, folder)
    return folder


def _edit(path, **changes):
    values = json.loads(path.read_text())
    values.update(changes)
    path.write_text(json.dumps(values))


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda f: _edit(f / "transformer" / "config.json", patch_size_t=2, ofs_embed_dim=512),
            "CogVideoX 1.5",
        ),
        (
            lambda f: _edit(f / "model_index.json", _class_name="CogVideoXPipeline"),
            "text-to-video",
        ),
        (
            lambda f: _edit(f / "transformer" / "config.json", in_channels=4),
            "in_channels=4, out_channels=4",
        ),
        (
            lambda f: next((f / "transformer").glob("*-00002-of-*.safetensors")).unlink(),
            "transformer/ is incomplete: 1 of",
        ),
        (lambda f: shutil.rmtree(f / "vae"), "no vae folder"),
        (lambda f: (f / "tokenizer" / "spiece.model").unlink(), "neither spiece.model"),
        (
            lambda f: [p.rename(p.with_suffix(".bin")) for p in (f / "vae").glob("*.safetensors")],
            "only pickled weights",
        ),
    ],
)
def test_a_wrong_folder_is_named_for_what_is_wrong(release, tmp_path, damage, message):
    folder = _copy(release, tmp_path)
    damage(folder)
    with pytest.raises(GeneratorFolderError, match=message):
        check_generator_folder(str(folder))


def test_a_sat_checkpoint_and_a_missing_folder_are_named(tmp_path):
    sat = tmp_path / "5B_RL"
    (sat / "1000").mkdir(parents=True)
    (sat / "1000" / "mp_rank_00_model_states.pt").write_bytes(b"\x80\x02}q\x00.")
    (sat / "latest").write_text("1000")
    with pytest.raises(GeneratorFolderError, match="SAT checkpoint.*convert_sat_generator"):
        check_generator_folder(str(sat))
    with pytest.raises(GeneratorFolderError, match="does not exist on this host"):
        check_generator_folder(str(tmp_path / "nowhere"))
    with pytest.raises(GeneratorFolderError, match="nor in its Hugging Face cache"):
        check_generator_folder("someone/not-downloaded-model")


def test_launching_on_a_wrong_folder_fails_at_once(release, tmp_path, settings, db, admin_user):
    from training.services.launch import InvalidParams, launch_run

    folder = _copy(release, tmp_path)
    _edit(folder / "transformer" / "config.json", patch_size_t=2, ofs_embed_dim=512)
    settings.LABELHUB_GENERATOR_PRESET = "cogvideox-5b-i2v"
    settings.LABELHUB_COGVIDEOX_PATH = str(folder)
    with pytest.raises(InvalidParams, match="LABELHUB_COGVIDEOX_PATH: .*CogVideoX 1.5"):
        launch_run(
            kind="generation",
            params={"source_round_id": 1, "target_round": "next"},
            created_by=admin_user,
        )


def _steps_seen(pipe, **call):
    seen = []

    def record(pipeline, step, timestep, kwargs):
        seen.append((type(pipeline.scheduler).__name__, round(pipeline.guidance_scale, 4)))
        return kwargs

    pipe(callback_on_step_end=record, **call)
    return seen


def test_the_release_sampler_is_dpm_with_dynamic_guidance_and_ddim_is_constant(tmp_path):
    components = load_generator("tiny")
    shape = components.shape
    call = {
        "image": Image.new("RGB", (shape.width, shape.height), (90, 120, 200)),
        "prompt": "a girl waves",
        "height": shape.height,
        "width": shape.width,
        "num_frames": shape.frames,
        "num_inference_steps": 3,
        "guidance_scale": 6.0,
        "max_sequence_length": components.max_text_tokens,
        "output_type": "latent",
    }
    dpm = _steps_seen(build_pipeline(components, sampler="dpm"), use_dynamic_cfg=True, **call)
    ddim = _steps_seen(build_pipeline(components, sampler="ddim"), **call)
    assert {name for name, _ in dpm} == {"CogVideoXDPMScheduler"}
    assert {name for name, _ in ddim} == {"CogVideoXDDIMScheduler"}
    assert [g for _, g in ddim] == [6.0, 6.0, 6.0]
    assert len({g for _, g in dpm}) == 3 and all(g != 6.0 for _, g in dpm)  # it moves per step
    with pytest.raises(ValueError, match="sampler must be one of"):
        build_pipeline(components, sampler="euler")


def test_a_generation_run_records_its_sampler(seed_round_for_sampler, admin_user):
    from training.services.launch import InvalidParams, validate_params

    cleaned = validate_params(
        "generation", {"source_round_id": seed_round_for_sampler, "target_round": "n"}
    )
    assert cleaned["sampler"] == "ddim"  # the tiny preset's default
    cleaned = validate_params(
        "generation",
        {"source_round_id": seed_round_for_sampler, "target_round": "n", "sampler": "dpm"},
    )
    assert cleaned["sampler"] == "dpm"
    with pytest.raises(InvalidParams, match="sampler must be one of"):
        validate_params(
            "generation",
            {"source_round_id": seed_round_for_sampler, "target_round": "n", "sampler": "pndm"},
        )


@pytest.fixture
def seed_round_for_sampler(db):
    from annotation.models import Round

    return Round.objects.create(name="sampler-source").pk


def test_rotary_embedding_is_the_pipelines_without_its_private_method(release):
    from training.alignment.trainer import rotary_embedding

    for components in (
        load_generator("tiny"),
        load_generator("cogvideox-5b-i2v", path=str(release)),
    ):
        pipe = build_pipeline(components)
        shape = components.shape
        latent_frames = (shape.frames - 1) // 4 + 1
        ours = rotary_embedding(components, latent_frames, "cpu")
        theirs = pipe._prepare_rotary_positional_embeddings(
            shape.height, shape.width, latent_frames, "cpu"
        )
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


# ----------------------------------------------------------------------------------------------
# Clips the policy did not make: resampled to the generator's fps and frame count, stretched
# ----------------------------------------------------------------------------------------------


def _numbered_clip(path, *, fps, frames, height, width):
    """Frame i's grey level encodes i (4 levels apart), so a resampled frame says where it came
    from; the left quarter is white on every frame (a crop would lose it)."""
    video = np.zeros((frames, height, width, 3), np.uint8)
    for i in range(frames):
        video[i] = min(255, 4 * i)
    video[:, :, : width // 4] = 255
    return write_video(video, path, fps=fps)


def _source_frame(tensor_frame):
    """The source frame number a [C, H, W] frame in [-1, 1] shows (from its right half)."""
    level = (tensor_frame[:, :, tensor_frame.shape[2] // 2 :].mean().item() + 1) * 127.5
    return round(level / 4)


def test_a_24fps_six_second_clip_is_resampled_to_49_frames_at_8fps(tmp_path):
    from training.alignment.trainer import video_to_tensor

    clip = _numbered_clip(tmp_path / "gt24.mp4", fps=24, frames=144, height=48, width=64)
    # (grey levels saturate at 255 past frame 63: check the frames under it)
    video = video_to_tensor(str(clip), frames=49, height=32, width=48, fps=8)
    assert video.shape == (3, 49, 32, 48)
    shown = [_source_frame(video[:, i]) for i in range(21)]
    assert shown == [3 * i for i in range(21)]  # every 3rd frame: 6 s stays 6 s, not 2 s
    # a 6 s clip at the generator's own 8 fps is taken frame for frame
    own = _numbered_clip(tmp_path / "own8.mp4", fps=8, frames=49, height=48, width=64)
    video = video_to_tensor(str(own), frames=49, height=32, width=48, fps=8)
    assert [_source_frame(video[:, i]) for i in range(49)] == [min(63, i) for i in range(49)]


def test_a_4_by_3_clip_is_stretched_like_the_condition_image_not_cropped(tmp_path):
    from training.alignment.trainer import video_to_tensor

    clip = _numbered_clip(tmp_path / "four3.mp4", fps=8, frames=9, height=48, width=64)
    video = video_to_tensor(str(clip), frames=9, height=32, width=64, fps=8)  # 2:1 target
    assert video.shape == (3, 9, 32, 64)
    # the white left quarter is still a quarter of the width: stretched, nothing cut away
    white = (video[:, 4].mean(dim=(0, 1)) > 0.9).float()
    assert white[:14].all() and not white[20:].any()
