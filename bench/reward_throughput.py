"""AnimeReward scoring throughput: clips per second, beside the decode-only rate on the same clips.

    .venv/bin/python bench/reward_throughput.py --preset tiny --device cpu --clips 64
    .venv/bin/python bench/reward_throughput.py --preset full --device cuda --clips 256 --batch-size 16
    .venv/bin/python bench/reward_throughput.py --preset full --device cpu --clips 4 --batch-size 2
      (full on a CPU: ~25 GB of RAM and well over 15 minutes on 2 cores; a GPU is the place for it)

    .venv/bin/python bench/reward_throughput.py --preset anisora --device cpu --clips 16
      (Bilibili's released models from --release-dir, default: a replica of the release's folder
      written with small widths, as the tests write it; prints clips/s and each model's share)

The full preset is built from the published configs with random weights (no download); rates do
not depend on the weights. 24 frames per clip, bf16 on a GPU, batched; decoding runs on a thread
pool ahead of the models, exactly as in ``scoring.jobs.score_clips`` (on a CPU the models get half
the cores while decoding runs, as there; ``--threads N`` sets torch's threads instead). Scoring reaching ~80% of
the decode-only rate means decoding is the bottleneck; far below it, the models are.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoring.anime_reward.frames import (  # noqa: E402
    NATIVE,
    ClipSpec,
    cores_shared_with_decoding,
    iter_decoded_batches,
)
from scoring.anime_reward.models import AnimeReward  # noqa: E402
from scoring.anime_reward.synthetic import make_labelled_clips  # noqa: E402


def decode_only(specs, *, size, batch_size, workers) -> float:
    start = time.perf_counter()
    for _ in iter_decoded_batches(specs, size=size, batch_size=batch_size, workers=workers):
        pass
    return time.perf_counter() - start


def score_all(model, specs, *, size, batch_size, workers, device) -> tuple[float, float]:
    """Decode + score every clip; returns (wall seconds, seconds spent inside the models)."""
    in_models = 0.0
    start = time.perf_counter()
    for batch in iter_decoded_batches(specs, size=size, batch_size=batch_size, workers=workers):
        t0 = time.perf_counter()
        model.score_batch(batch.inputs)
        if device == "cuda":
            torch.cuda.synchronize()
        in_models += time.perf_counter() - t0
    return time.perf_counter() - start, in_models


def model_only(model, specs, *, size, batch_size, device) -> tuple[float, dict[str, float]]:
    """Models on pre-decoded batches, with time per dimension's encoders (shared CLIP counted once)."""
    batches = [
        b.inputs for b in iter_decoded_batches(specs, size=size, batch_size=batch_size, workers=4)
    ]
    per_dimension = dict.fromkeys(model.dimensions, 0.0)
    start = time.perf_counter()
    with torch.no_grad():
        for inputs in batches:
            memo: dict = {}
            for key, dimension in model.dimensions.items():
                t0 = time.perf_counter()
                dimension.reward(*dimension.features(inputs, memo))
                if device == "cuda":
                    torch.cuda.synchronize()
                per_dimension[key] += time.perf_counter() - t0
    return time.perf_counter() - start, per_dimension


def anisora_parts(model, specs, *, batch_size, device) -> tuple[float, dict[str, float]]:
    """The released models on pre-decoded clips (source resolution), time per model."""
    from scoring.anime_reward.anisora import preprocess as pre

    batches = [
        b for b in iter_decoded_batches(specs, size=NATIVE, batch_size=batch_size, workers=4)
    ]
    parts = dict.fromkeys(
        ("preprocess", "smoothness", "appeal", "image consistency", "text consistency"), 0.0
    ) | dict.fromkeys(("motion", "character"), 0.0)

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        if device == "cuda":
            torch.cuda.synchronize()
        parts[name] += time.perf_counter() - t0
        return out

    start = time.perf_counter()
    dev = model._device()
    with torch.inference_mode():
        for batch in batches:
            for spec, clip in zip(batch.specs, batch.inputs.native, strict=True):
                pixels = timed("preprocess", pre.key_pixels, clip.frames).to(dev)
                key = timed("preprocess", pre.key_pixels, clip.condition[None]).to(dev)
                tokens = model.bert_tokenizer(
                    [spec.prompt], padding="max_length", truncation=True, max_length=30,
                    return_tensors="pt",
                ).to(dev)  # fmt: skip
                hidden = model.last_hidden
                timed("smoothness", hidden, "visual_smoothness", clip.frames, spec.prompt)
                timed("appeal", hidden, "visual_appeal", clip.frames, spec.prompt)
                timed("image consistency", model.image_consistency.score, pixels, key)
                timed("text consistency", model.text_consistency.score, pixels, dict(tokens))
                timed("motion", model.motion_reward, pixels)
                timed(
                    "character", model.character_reward, clip.frames, clip.condition, clip.reference
                )
    return time.perf_counter() - start, parts


def bench_anisora(args) -> None:
    from scoring.anime_reward.anisora.reward import AnisoraReward

    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    with tempfile.TemporaryDirectory(prefix="reward-bench-") as tmp:
        release, sam = args.release_dir, args.sam_dir
        if not release:  # a replica of the release's folder, small widths (tests/anisora_replica)
            from tests import anisora_replica

            release = anisora_replica.write_release(Path(tmp) / "reward")
            sam = Path(tmp) / "sam"
            anisora_replica.sam2(sam)
        t0 = time.perf_counter()
        model = AnisoraReward.from_release(
            release, sam_source=str(sam), device=args.device, dtype=dtype
        )
        build_s = time.perf_counter() - t0
        clips = make_labelled_clips(
            Path(tmp) / "clips", args.clips, frames=args.frames, size=args.size
        )
        specs = [
            ClipSpec(c.index, str(c.video_path), str(c.condition_image_path), c.prompt)
            for c in clips
        ]
        score_all(
            model, specs[:1], size=NATIVE, batch_size=1, workers=args.workers, device=args.device
        )
        decode_s = min(
            decode_only(specs, size=NATIVE, batch_size=args.batch_size, workers=args.workers)
            for _ in range(args.repeats)
        )
        score_s, model_s = min(
            score_all(
                model,
                specs,
                size=NATIVE,
                batch_size=args.batch_size,
                workers=args.workers,
                device=args.device,
            )  # fmt: skip
            for _ in range(args.repeats)
        )
        _, parts = anisora_parts(model, specs, batch_size=args.batch_size, device=args.device)
    n = args.clips
    name = (
        torch.cuda.get_device_name()
        if args.device == "cuda"
        else f"CPU, {torch.get_num_threads()} torch threads"
    )
    weights = (
        "release folder " + str(args.release_dir) if args.release_dir else "replica (small widths)"
    )
    print(f"AnimeReward anisora ({weights}) on {name}; {n} clips of {args.frames} frames at {args.size}px, source resolution, {dtype}")  # fmt: skip
    print(f"  load:                     {build_s:8.1f} s")
    print(f"  decode only:              {n / decode_s:8.2f} clips/s")
    print(f"  models only:              {n / model_s:8.2f} clips/s (time inside score_batch)")
    print(f"  scoring (decode + models):{n / score_s:8.2f} clips/s")
    total = sum(parts.values()) or 1.0
    print(
        "  share per model: " + ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in parts.items())
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", choices=["tiny", "full", "anisora"], default="tiny")
    parser.add_argument("--release-dir", default="", help="anisora: the release's reward/ folder")
    parser.add_argument(
        "--sam-dir",
        default="",
        help="anisora: a facebook/sam2.1-hiera-* folder (transformers layout)",
    )
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4, help="decode threads")
    parser.add_argument(
        "--frames", type=int, default=48, help="frames per synthetic clip (24 are sampled)"
    )
    parser.add_argument(
        "--size", type=int, default=256, help="side of the synthetic clips in pixels"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0 = as score_clips: half the cores while decoding runs)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="best of this many timings (shared machines)"
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.preset == "anisora":
        bench_anisora(args)
        return

    dtype = torch.bfloat16 if args.device == "cuda" else torch.float32
    t0 = time.perf_counter()
    model = AnimeReward.from_preset(
        args.preset, random_weights=True, device=args.device, dtype=dtype
    ).eval()
    build_s = time.perf_counter() - t0
    frame_size = model.encoders.preset.frame_size

    shared = nullcontext() if args.threads else cores_shared_with_decoding(args.device)
    with tempfile.TemporaryDirectory(prefix="reward-bench-") as tmp, shared:
        threads = torch.get_num_threads()
        clips = make_labelled_clips(Path(tmp), args.clips, frames=args.frames, size=args.size)
        specs = [
            ClipSpec(c.index, str(c.video_path), str(c.condition_image_path), c.prompt)
            for c in clips
        ]
        # Warm up (kernels, allocator, page cache) on one batch.
        score_all(
            model,
            specs[: args.batch_size],
            size=frame_size,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
        )
        decode_s = min(
            decode_only(specs, size=frame_size, batch_size=args.batch_size, workers=args.workers)
            for _ in range(args.repeats)
        )
        score_s, model_s = min(
            score_all(
                model,
                specs,
                size=frame_size,
                batch_size=args.batch_size,
                workers=args.workers,
                device=args.device,
            )
            for _ in range(args.repeats)
        )
        cpu0 = time.process_time()
        decode_only(specs, size=frame_size, batch_size=args.batch_size, workers=args.workers)
        decode_cpu = time.process_time() - cpu0
        cpu0 = time.process_time()
        _, per_dimension = model_only(
            model, specs, size=frame_size, batch_size=args.batch_size, device=args.device
        )
        model_cpu = time.process_time() - cpu0 - decode_cpu  # model_only decodes its batches first

    n = args.clips
    decode_rate, score_rate, model_rate = n / decode_s, n / score_s, n / model_s
    name = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {threads} torch threads"
    )
    print(
        f"AnimeReward {args.preset} on {name}; {n} clips of {args.frames} frames at {args.size}px, "
        f"24 sampled at {frame_size}px, batch {args.batch_size}, {args.workers} decode threads, {dtype}"
    )
    print(f"  build (random weights):   {build_s:8.1f} s")
    print(f"  decode only:              {decode_rate:8.2f} clips/s")
    print(f"  models only:              {model_rate:8.2f} clips/s (time inside score_batch)")
    print(
        f"  scoring (decode + models):{score_rate:8.2f} clips/s = {100 * score_rate / decode_rate:.0f}% of decode-only"
    )
    total = sum(per_dimension.values()) or 1.0
    print(
        "  model time per dimension: "
        + ", ".join(f"{key} {100 * seconds / total:.0f}%" for key, seconds in per_dimension.items())
    )
    if args.device == "cpu":
        # Decoding and the models share the same cores: CPU time per clip bounds the scoring rate.
        cores = len(os.sched_getaffinity(0))
        per_clip = 1000 * (decode_cpu + model_cpu) / n
        ceiling = 1000 * cores / per_clip
        print(
            f"  CPU per clip: decode {1000 * decode_cpu / n:.0f} ms, models {1000 * model_cpu / n:.0f} ms; "
            f"on {cores} cores scoring can reach at most {ceiling:.1f} clips/s = "
            f"{100 * ceiling / decode_rate:.0f}% of decode-only"
        )
    bottleneck = "decoding" if model_rate > decode_rate else "the models"
    print(
        f"  bottleneck: {bottleneck} (models alone {model_rate:.2f} vs decode alone {decode_rate:.2f} clips/s)"
    )


if __name__ == "__main__":
    main()
