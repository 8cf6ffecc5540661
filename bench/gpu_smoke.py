"""GPU proof of the full-size generator path, ready to run: prints one table. Not a test.

    # one GPU, full-size CogVideoX-5B-I2V with random weights from the released configs (no
    # download; ~20 GB of host memory to build): GAPO and SFT step time and peak memory at
    # 49x480x720, the encoding phase, a full decode, a 2-pair train + resume + a 2-step
    # generation with the saved LoRA loaded through load_lora_weights
    python bench/gpu_smoke.py
    # the same sequence on CPU on a small-width replica of the released folder, loaded through the
    # production load_generator (CI runs this through tests/test_gpu_smoke.py)
    python bench/gpu_smoke.py --cpu-small

The table ends with the anisora reward's full-size plan (``scoring/anime_reward/anisora/plan.py``):
per released model its parameters and bf16 weight memory, counted on models built on the meta
device from the released configs' numbers (nothing downloaded), its TFLOP per clip, and the clips/s
one H100 is expected to reach. Not yet covered: the full AnimeReward preset fine-tuning one epoch
(its encoders' replicas are the reward side's); run ``bench/reward_throughput.py`` for the reward
models on replicas.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.anime_reward.anisora.plan import anisora_reward_plan, plan_rows  # noqa: E402
from training.alignment.cogvideox import load_generator  # noqa: E402
from training.alignment.pairs import Pair  # noqa: E402
from training.alignment.replica import build_full_size_random  # noqa: E402
from training.alignment.sampling import GenerationCondition, generate_candidates  # noqa: E402
from training.alignment.trainer import TrainConfig, encode_pairs, train  # noqa: E402


def peak_memory(device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # host GiB on CPU


def reset_peak(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def clip(path: Path, shape, seed: int) -> Path:
    from scoring.anime_reward.video import write_video

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (1, shape.height, shape.width, 3))
    drift = np.arange(shape.frames)[:, None, None, None] * 3
    return write_video(
        ((base + drift) % 255).astype(np.uint8), path, fps=shape.fps
    )  # a 6 s clip at 8 fps


def smoke(args) -> list[tuple[str, str]]:
    device = torch.device("cpu" if args.cpu_small else "cuda")
    dtype = torch.float32 if args.cpu_small else torch.bfloat16
    work = Path(tempfile.mkdtemp(prefix="gpu-smoke-"))
    rows: list[tuple[str, str]] = []

    def timed(name, fn):
        reset_peak(device)
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        rows.append(
            (name, f"{time.perf_counter() - start:8.2f} s  peak {peak_memory(device):6.2f} GiB")
        )
        return result

    if args.cpu_small:
        from training.alignment.replica import write_release_replica

        folder = write_release_replica(work / "CogVideoX-5b-I2V")
        build = lambda: load_generator(  # noqa: E731
            "cogvideox-5b-i2v", path=str(folder), device=device, dtype=dtype
        )
        model_path = str(folder)
    else:
        build = lambda: build_full_size_random(device, dtype)  # noqa: E731
        model_path = "random-weights"
    components = timed("build generator", build)
    shape = components.shape
    rows.append(
        ("video", f"{shape.frames} frames at {shape.height}x{shape.width}, {shape.fps} fps")
    )
    image = work / "first.png"
    from PIL import Image

    Image.fromarray(np.full((shape.height, shape.width, 3), 128, np.uint8)).save(image)
    pairs = [
        Pair(i, 2 * i, 2 * i + 1, 0.9, 0.1, str(clip(work / f"w{i}.mp4", shape, 2 * i)),
             str(clip(work / f"l{i}.mp4", shape, 2 * i + 1)), "a girl runs in the rain", str(image))
        for i in range(2)
    ]  # fmt: skip
    cache = timed(
        "encoding phase (2 pairs: VAE + T5)",
        lambda: encode_pairs(
            pairs, components, cache_path=work / "enc" / "c.safetensors", image_noise_mean=-3.0,
            seed=0, model_path=model_path,
        ),
    )  # fmt: skip
    latents = cache["winner_latents"][:1].to(device, dtype).permute(0, 2, 1, 3, 4)
    with torch.no_grad():
        timed(
            "full decode (1 video)",
            lambda: components.vae.decode(latents / components.vae.config.scaling_factor),
        )

    def run(name, loss_type, steps, **kw):
        config = TrainConfig(
            output_dir=str(work / name), preset="cogvideox-5b-i2v", model_path=model_path,
            loss_type=loss_type, max_steps=steps, batch_pairs=1, lora_rank=args.lora_rank,
            checkpoint_every=1, validation_share=0.0, device=device.type, **kw,
        )  # fmt: skip
        try:  # one generator for every run: a second 5B copy would not fit beside the first
            return train(config, pairs, components=components)
        finally:
            components.transformer.delete_adapters("default")
            components.transformer.disable_gradient_checkpointing()
            components.transformer.eval()

    gapo = timed("GAPO: 1 step (incl. adding LoRA)", lambda: run("gapo", "gapo", 1))
    rows.append(("GAPO seconds/step", f"{gapo.metrics[-1]['seconds_per_step']:8.2f} s"))
    sft = timed("SFT: 1 step", lambda: run("sft", "sft", 1))
    rows.append(("SFT seconds/step", f"{sft.metrics[-1]['seconds_per_step']:8.2f} s"))
    timed("2-pair train: 2 steps", lambda: run("resume", "gapo", 2))
    resumed = timed("resume to step 3", lambda: run("resume", "gapo", 3, resume_from="latest"))
    rows.append(("resumed at", f"step {resumed.metrics[-1]['step']} of 3"))
    generated = timed(
        "2-step generation with the LoRA (load_lora_weights)",
        lambda: generate_candidates(
            components, [GenerationCondition("c", "a girl runs in the rain", str(image))],
            candidates_per_condition=1, base_seed=0, out_dir=work / "gen", inference_steps=2,
            lora_dir=resumed.lora_dir,
        ),
    )  # fmt: skip
    rows.append(("generated", f"{len(generated)} video(s), sampler {generated[0].sampler}"))
    rows += plan_rows(anisora_reward_plan())  # computed, not run: the same on either device
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-small", action="store_true", help="small replica on the CPU")
    parser.add_argument("--lora-rank", type=int, default=128)
    args = parser.parse_args()
    if args.cpu_small:
        args.lora_rank = min(args.lora_rank, 4)
    elif not torch.cuda.is_available():
        sys.exit("no GPU here: run with --cpu-small, or on a GPU host")
    rows = smoke(args)
    device = "cpu (small replica)" if args.cpu_small else torch.cuda.get_device_name()
    print(f"gpu_smoke on {device}")
    for name, value in rows:
        print(f"  {name:<52} {value}")
    print(json.dumps({"ok": True, "rows": len(rows)}))


if __name__ == "__main__":
    main()
