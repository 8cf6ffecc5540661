"""The GAPO trainer on the tiny preset: config validation, LoRA that diffusers loads back, the
reference as the adapter-disabled transformer, latent caching, checkpoint and resume."""

import json

import pytest
import torch

from training.alignment.cogvideox import load_generator
from training.alignment.pairs import build_pairs
from training.alignment.sampling import build_pipeline, generate_candidates
from training.alignment.toy import scored_candidates, synthetic_conditions
from training.alignment.trainer import (
    LORA_WEIGHT_NAME,
    TrainConfig,
    predict_v,
    reference_model,
    rotary_embedding,
    train,
)


def test_config_defaults_follow_the_paper():
    config = TrainConfig(output_dir="/tmp/x")
    assert (config.beta, config.alpha, config.loss_type) == (5000.0, 2.0, "gapo")
    assert all(TrainConfig.help().values())


@pytest.mark.parametrize(
    "values, message",
    [
        ({"loss_type": "ppo"}, "loss_type must be one of gapo, dpo, sft"),
        ({"beta": 0}, "beta must be > 0"),
        ({"alpha": 1.0}, "alpha must be > 1"),
        ({"lora_rank": 0}, "lora_rank must be >= 1"),
        ({"learning_rate": 2.0}, "learning_rate"),
        ({"preset": "cogvideox-5b-i2v"}, "needs model_path"),
        ({"preset": "huge"}, "preset must be one of"),
    ],
)
def test_config_rejects_bad_values_with_clear_errors(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(output_dir="/tmp/x", **values)


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown training parameters: lr"):
        TrainConfig.from_dict({"lr": 0.1})
    assert TrainConfig.from_dict({"max_steps": 3}).max_steps == 3


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs")
    conditions = synthetic_conditions(out, count=3, seed=1)
    candidates = generate_candidates(
        load_generator("tiny"),
        conditions,
        candidates_per_condition=3,
        base_seed=5,
        out_dir=out,
        inference_steps=4,
    )
    return build_pairs(scored_candidates(candidates))


def config(tmp_path, name, **kw):
    values = {
        "output_dir": str(tmp_path / name),
        "lora_rank": 4,
        "learning_rate": 5e-3,
        "max_steps": 4,
        "batch_pairs": 2,
        "checkpoint_every": 0,
        "seed": 3,
        **kw,
    }
    return TrainConfig(**values)


def model_inputs(components, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = components.shape
    latent = (1, (shape.frames - 1) // 4 + 1, 4, shape.height // 4, shape.width // 4)
    return {
        "noisy": torch.randn(latent, generator=g),
        "image_latents": torch.randn(latent, generator=g),
        "prompt_embeds": torch.randn(1, components.max_text_tokens, 32, generator=g),
        "timesteps": torch.tensor([500]),
        "rotary": rotary_embedding(components, latent[1], "cpu"),
    }


@pytest.mark.slow
def test_lora_loads_back_through_diffusers_and_the_reference_is_the_base(tmp_path, pairs):
    trained = load_generator("tiny")
    result = train(config(tmp_path, "run"), pairs, components=trained)
    assert (tmp_path / "run" / "lora" / LORA_WEIGHT_NAME).exists()
    inputs = model_inputs(trained)
    with torch.no_grad():
        policy = predict_v(trained.transformer, **inputs)
        with reference_model(trained.transformer):
            reference = predict_v(trained.transformer, **inputs)

    fresh = load_generator("tiny")
    with torch.no_grad():
        base = predict_v(fresh.transformer, **inputs)
        pipe = build_pipeline(fresh)
        pipe.load_lora_weights(result.lora_dir)  # diffusers' own loader reads our safetensors
        loaded = predict_v(fresh.transformer, **inputs)

    assert torch.allclose(
        reference, base, atol=1e-6
    )  # adapters disabled == the base model, no copy
    assert not torch.allclose(policy, base, atol=1e-4)  # training moved the policy
    assert torch.allclose(loaded, policy, atol=1e-5)  # and the saved LoRA reproduces it
    assert result.metrics[-1]["step"] == 4
    for key in ("loss", "implicit_accuracy", "reward_margin", "grad_norm", "gap"):
        assert key in result.metrics[-1]


@pytest.mark.slow
def test_resume_from_a_checkpoint_continues_exactly(tmp_path, pairs):
    from safetensors.torch import load_file

    straight = train(config(tmp_path, "straight", max_steps=4), pairs)
    checkpoints = []
    first = train(
        config(tmp_path, "halves", max_steps=2, checkpoint_every=1),
        pairs,
        on_checkpoint=checkpoints.append,
    )
    assert checkpoints[-1] == first.checkpoint_dir and first.checkpoint_dir.endswith("checkpoint-2")
    assert (
        json.loads((tmp_path / "halves" / "checkpoint-2" / "trainer_state.json").read_text())[
            "step"
        ]
        == 2
    )
    seen = []
    resumed = train(
        config(tmp_path, "halves", max_steps=4, resume_from="latest"),
        pairs,
        on_progress=lambda step, total, metrics=None, message="": metrics and seen.append(step),
    )
    assert seen == [3, 4]  # picked up after step 2, not from 0
    assert [m["step"] for m in resumed.metrics] == [1, 2, 3, 4]
    a = load_file(f"{straight.lora_dir}/{LORA_WEIGHT_NAME}")
    b = load_file(f"{resumed.lora_dir}/{LORA_WEIGHT_NAME}")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    assert [m["loss"] for m in resumed.metrics] == pytest.approx(
        [m["loss"] for m in straight.metrics], abs=1e-6
    )


@pytest.mark.slow
def test_pair_videos_are_encoded_once_and_cached_under_a_key_of_their_content(tmp_path, pairs):
    """The second run encodes nothing (VAE and T5 calls counted); changing a reward, which the
    cache stores, makes a new cache instead of returning the stale rewards."""
    from dataclasses import replace

    from safetensors.torch import load_file

    calls = {"vae": 0, "t5": 0}

    def counted():
        components = load_generator("tiny")
        vae_encode, t5_forward = components.vae.encode, components.text_encoder.forward

        def counted_encode(*args, **kwargs):
            calls["vae"] += 1
            return vae_encode(*args, **kwargs)

        def counted_forward(*args, **kwargs):
            calls["t5"] += 1
            return t5_forward(*args, **kwargs)

        components.vae.encode = counted_encode
        components.text_encoder.forward = counted_forward
        return components

    train(config(tmp_path, "cached", max_steps=1), pairs)
    train(config(tmp_path, "cached", max_steps=1), pairs, components=counted())
    assert calls == {"vae": 0, "t5": 0}

    changed = [replace(pairs[0], winner_reward=pairs[0].loser_reward + 0.01), *pairs[1:]]
    train(config(tmp_path, "cached", max_steps=1), changed, components=counted())
    videos = {p.winner_video for p in changed} | {p.loser_video for p in changed}
    images = {p.first_frame for p in changed}
    assert calls["vae"] == len(videos) + len(pairs)  # every video once, one image latent per pair
    assert len(images) <= len(pairs)
    cache = load_file(tmp_path / "cached" / "latent-cache.safetensors")
    assert cache["winner_rewards"][0].item() == pytest.approx(changed[0].winner_reward)
    # bf16, and only the informative image-latent frame (the pipeline pads the rest with zeros)
    assert cache["winner_latents"].dtype == torch.bfloat16
    assert cache["image_latents"].shape[1] == 1 and cache["winner_latents"].shape[1] == 3


@pytest.mark.slow
def test_sft_trains_on_winners_without_a_reference(tmp_path, pairs):
    """SFT's loss is the winners' v-prediction MSE itself, the reference (adapters off) is never
    run, and the losers play no part: other losers leave the losses as they were."""
    from dataclasses import replace

    components = load_generator("tiny")
    disabled = []
    disable = components.transformer.disable_adapters
    components.transformer.disable_adapters = lambda: disabled.append(1) or disable()
    result = train(
        config(tmp_path, "sft", loss_type="sft", max_steps=2), pairs, components=components
    )
    assert disabled == []
    assert [m["loss"] for m in result.metrics] == [m["policy_mse"] for m in result.metrics]
    assert "implicit_accuracy" not in result.metrics[-1]
    other_losers = [replace(p, loser_video=pairs[(i + 1) % len(pairs)].winner_video)
                    for i, p in enumerate(pairs)]  # fmt: skip
    swapped = train(config(tmp_path, "sft-swapped", loss_type="sft", max_steps=2), other_losers)
    assert [m["loss"] for m in swapped.metrics] == pytest.approx(
        [m["loss"] for m in result.metrics], abs=1e-6
    )


@pytest.mark.slow
def test_next_round_starts_from_the_previous_policy_lora(tmp_path, pairs):
    previous = train(config(tmp_path, "round0", max_steps=3), pairs)
    fresh = train(config(tmp_path, "fresh", max_steps=1), pairs)
    continued = train(config(tmp_path, "round1", max_steps=1, init_lora=previous.lora_dir), pairs)
    # A zero-initialised LoRA equals the reference at step 1 (margin 0); one started from the
    # previous policy already differs from the base model.
    assert fresh.metrics[0]["reward_margin"] == pytest.approx(0.0, abs=1e-9)
    assert abs(continued.metrics[0]["reward_margin"]) > 1e-6
    with pytest.raises(ValueError, match="does not fit this adapter"):
        train(
            config(tmp_path, "wrong-rank", max_steps=1, lora_rank=8, init_lora=previous.lora_dir),
            pairs,
        )
    with pytest.raises(ValueError, match="init_lora has no"):
        config(tmp_path, "missing", init_lora=str(tmp_path / "nowhere"))


@pytest.mark.slow
def test_checkpoint_retention_keeps_the_last_n_and_the_best_on_held_out_pairs(tmp_path, pairs):
    run = tmp_path / "retained"
    seen, validations = [], {}

    def progress(step, total, metrics=None, message=""):
        if message.startswith("held-out pairs: "):
            validations[step] = json.loads(message.removeprefix("held-out pairs: "))

    result = train(
        config(
            tmp_path,
            "retained",
            max_steps=5,
            batch_pairs=1,
            checkpoint_every=1,
            keep_last_checkpoints=2,
            validation_share=0.34,  # 1 of the 3 pairs held out
            learning_rate=5e-2,
        ),
        pairs,
        on_checkpoint=seen.append,
        on_progress=progress,
    )
    assert [p.rsplit("-", 1)[1] for p in seen] == ["1", "2", "3", "4", "5"]
    assert sorted(validations) == [1, 2, 3, 4, 5]
    # The best is chosen on the held-out pair's implicit accuracy, then its margin; not on the
    # training loss (which the metrics hold and the choice ignores).
    score = {
        s: (v["val_implicit_accuracy"], v["val_reward_margin"]) for s, v in validations.items()
    }
    best_step = max(score, key=score.get)
    best = json.loads((run / "best_checkpoint.json").read_text())
    assert best["checkpoint"] == f"checkpoint-{best_step}"
    assert best["validation"] == validations[best_step]
    assert len({v["val_reward_margin"] for v in validations.values()}) == 5  # it moved each step
    kept = sorted(p.name for p in run.glob("checkpoint-*"))
    assert kept == sorted({"checkpoint-4", "checkpoint-5", f"checkpoint-{best_step}"})
    # everything a resume needs is still in what was kept
    assert (run / "checkpoint-5" / "optimizer.pt").exists()
    assert result.steps == 5

    keep_all = train(
        config(tmp_path, "all", max_steps=3, checkpoint_every=1, keep_last_checkpoints=0), pairs
    )
    assert keep_all.steps == 3
    assert sorted(p.name for p in (tmp_path / "all").glob("checkpoint-*")) == [
        "checkpoint-1",
        "checkpoint-2",
        "checkpoint-3",
    ]


def test_pair_cache_stays_on_the_host_and_streams_batches():
    from training.alignment.trainer import PairCache

    tensors = {
        "winner_latents": torch.arange(24.0).view(6, 4),
        "winner_rewards": torch.arange(6.0),
    }
    cache = PairCache(tensors, torch.device("cpu"))
    batch = cache.batch(torch.tensor([4, 1]))
    assert not cache.pin  # pinned per batch on CUDA only
    assert len(cache) == 6 and cache.shape("winner_latents") == (6, 4)
    assert batch["winner_rewards"].tolist() == [4.0, 1.0]
    assert batch["winner_latents"][0].tolist() == [16.0, 17.0, 18.0, 19.0]
    assert cache.tensors["winner_latents"].device.type == "cpu"


def test_retention_config_is_validated():
    with pytest.raises(ValueError, match="keep_last_checkpoints"):
        TrainConfig(output_dir="/tmp/x", keep_last_checkpoints=-1)


def test_condition_image_is_stretched_like_the_i2v_pipeline_does(tmp_path):
    """Training conditions match generation: the first frame is resized as diffusers'
    VaeImageProcessor does in CogVideoXImageToVideoPipeline (stretch, no centre crop)."""
    import numpy as np
    from diffusers.image_processor import VaeImageProcessor
    from PIL import Image

    from training.alignment.trainer import image_to_tensor

    rng = np.random.default_rng(0)
    wide = Image.fromarray((rng.random((24, 64, 3)) * 255).astype(np.uint8))  # 64 x 24
    path = tmp_path / "wide.png"
    wide.save(path)
    ours = image_to_tensor(str(path), height=32, width=32)[:, 0]
    theirs = VaeImageProcessor(vae_scale_factor=8).preprocess(wide, height=32, width=32)[0]
    assert ours.shape == theirs.shape == (3, 32, 32)
    # 8-bit rounding of the resized PIL image on our side: within one grey level.
    assert torch.allclose(ours, theirs.float(), atol=2 / 255)
    # A centre crop would have thrown away the left and right of the frame.
    left_column = torch.from_numpy(np.array(wide.resize((32, 32), Image.LANCZOS)))[:, 0]
    assert torch.allclose(ours[:, :, 0].T, left_column.float() / 127.5 - 1.0, atol=1e-6)
