"""Benchmark: one GAPO step vs one SFT step on the same two videos, and one generation vs a plain
diffusers pipeline call. Prints figures; not a test.

    # the full-size CogVideoX-5B-I2V architecture, random weights from its config (needs a GPU):
    python bench/gapo_step.py --preset cogvideox-5b-i2v --device cuda
    # the tiny preset on a CPU (figures say nothing about the GPU budget):
    python bench/gapo_step.py --preset tiny --device cpu
    # paper scale (2,000 pairs, 1,000 steps): planned peak GPU memory and disk from the real
    # configs, no GPU needed
    python bench/gapo_step.py --plan --pairs 2000

GAPO = policy forward + backward on winner and loser (one batch of two) + a forward-only reference
pass (adapters disabled); SFT = policy forward + backward on the same two videos. Budget: GAPO step
<= 1.4x SFT step. MFU counts model FLOPs (matmuls of the transformer blocks + attention): a LoRA
step is forward + input-gradient backward (2x forward; frozen base weights need no weight
gradients) for the policy, plus one forward for the reference; recomputation from gradient
checkpointing is not counted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.alignment import release  # noqa: E402
from training.alignment.cogvideox import (  # noqa: E402
    COGVIDEOX_5B_I2V_TRANSFORMER,
    SHAPES,
    load_generator,
)
from training.alignment.release import init_args  # noqa: E402
from training.alignment.replica import build_full_size_random  # noqa: E402
from training.alignment.trainer import (  # noqa: E402
    TrainConfig,
    add_lora,
    draw_for_slots,
    rotary_embedding,
    training_step,
)

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
FULL_VAE = init_args(release.VAE)
T5_XXL = init_args(release.TEXT_ENCODER)


def forward_flops(transformer, tokens: int) -> float:
    """Matmul FLOPs of one forward pass of one sample: 2 * (block linear weights) * tokens + attention."""
    blocks = transformer.transformer_blocks
    linear = sum(m.weight.numel() for m in blocks.modules() if isinstance(m, torch.nn.Linear))
    dim = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    attention = 4 * len(blocks) * tokens * tokens * dim  # QK^T and AV
    return 2 * linear * tokens + attention


def synthetic_batch(components, device, pairs: int = 1) -> dict:
    shape, cfg = components.shape, components.transformer.config
    latent = (
        pairs,
        (shape.frames - 1) // 4 + 1,
        cfg.out_channels,
        shape.height // components_spatial(components),
        shape.width // components_spatial(components),
    )
    g = torch.Generator().manual_seed(0)
    bf16 = torch.bfloat16  # as the pair cache holds them
    return {
        "winner_latents": torch.randn(latent, generator=g).to(device, bf16),
        "loser_latents": torch.randn(latent, generator=g).to(device, bf16),
        "image_latents": torch.randn((pairs, 1, *latent[2:]), generator=g).to(device, bf16),
        "prompt_embeds": torch.randn(
            pairs, cfg.max_text_seq_length, cfg.text_embed_dim, generator=g
        ).to(device, bf16),
        "empty_prompt_embeds": torch.randn(
            cfg.max_text_seq_length, cfg.text_embed_dim, generator=g
        ).to(device, bf16),
        "winner_rewards": torch.tensor([0.8] * pairs, device=device),
        "loser_rewards": torch.tensor([0.3] * pairs, device=device),
    }


def components_spatial(components) -> int:
    return 2 ** (len(components.vae.config.block_out_channels) - 1)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(components, batch, config, device, *, warmup: int, repeats: int, bf16: bool):
    transformer = components.transformer
    params = [p for n, p in transformer.named_parameters() if "lora_" in n]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    rotary = rotary_embedding(components, batch["winner_latents"].shape[1], device)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup + repeats):
        sync(device)
        start = time.perf_counter()
        draws = draw_for_slots(
            config,
            step=i,
            slots=list(range(len(batch["winner_latents"]))),
            latent_shape=batch["winner_latents"].shape[1:],
            num_timesteps=components.scheduler.config.num_train_timesteps,
        )
        loss, _ = training_step(
            transformer=transformer,
            scheduler=components.scheduler,
            batch=batch,
            draws=draws,
            config=config,
            rotary=rotary,
            autocast_dtype=torch.bfloat16 if bf16 else None,
        )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return statistics.median(times), peak


def bench_generation(components, device, *, steps: int, guidance: float, repeats: int) -> dict:
    from PIL import Image

    from training.alignment.sampling import GenerationCondition, build_pipeline, generate_candidates

    shape = components.shape
    with tempfile.TemporaryDirectory() as tmp:
        image_path = Path(tmp) / "first.png"
        Image.new("RGB", (shape.width, shape.height), (120, 80, 200)).save(image_path)
        condition = GenerationCondition("bench", "a girl runs in the rain", str(image_path))
        pipe = build_pipeline(components)
        plain, ours = [], []
        for i in range(repeats + 1):
            sync(device)
            start = time.perf_counter()
            with torch.no_grad():
                pipe(
                    image=Image.open(image_path),
                    prompt=condition.prompt,
                    height=shape.height,
                    width=shape.width,
                    num_frames=shape.frames,
                    num_inference_steps=steps,
                    guidance_scale=guidance,
                    generator=torch.Generator(device=device).manual_seed(i),
                    max_sequence_length=components.max_text_tokens,
                    output_type="np",
                )
            sync(device)
            if i:
                plain.append(time.perf_counter() - start)
            start = time.perf_counter()
            generate_candidates(
                components,
                [condition],
                candidates_per_condition=1,
                base_seed=i,
                out_dir=tmp,
                inference_steps=steps,
                guidance_scale=guidance,
            )
            sync(device)
            if i:
                ours.append(time.perf_counter() - start)
    return {
        "plain_pipeline_s": statistics.median(plain),
        "generate_candidates_s": statistics.median(ours),
        "ratio": statistics.median(ours) / statistics.median(plain),
    }


# ----------------------------------------------------------------------------------------------
# --plan: peak GPU memory and disk of a paper-scale run, from the real configs, without a GPU
# ----------------------------------------------------------------------------------------------

GIB = 2**30


def count_parameters(build) -> int:
    """Parameters of a module built on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        module = build()
    return sum(p.numel() for p in module.parameters())


def lora_parameters(transformer_config: dict, rank: int) -> int:
    """LoRA A (r x in) + B (out x r) on to_q, to_k, to_v, to_out.0 of every attention block."""
    from diffusers import CogVideoXTransformer3DModel

    from training.alignment.config import LORA_TARGET_MODULES

    with torch.device("meta"):
        transformer = CogVideoXTransformer3DModel(**transformer_config)
    total = 0
    for name, module in transformer.named_modules():
        if isinstance(module, torch.nn.Linear) and any(
            name.endswith("." + t) for t in LORA_TARGET_MODULES
        ):
            total += rank * (module.in_features + module.out_features)
    return total


def plan(args) -> dict:
    """Planned peak GPU memory (bf16 base, fp32 LoRA + AdamW, checkpointed activations, streamed
    pair cache) and disk (weights, pair videos, latent cache, retained checkpoints)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    cfg = COGVIDEOX_5B_I2V_TRANSFORMER
    shape = SHAPES["cogvideox-5b-i2v"]
    base = count_parameters(lambda: CogVideoXTransformer3DModel(**cfg))
    t5 = count_parameters(lambda: T5EncoderModel(T5Config(**T5_XXL)))
    vae = count_parameters(lambda: AutoencoderKLCogVideoX(**FULL_VAE))
    lora = lora_parameters(cfg, args.lora_rank)

    latent_frames = (shape.frames - 1) // cfg["temporal_compression_ratio"] + 1
    lh, lw = shape.height // 8, shape.width // 8
    video_tokens = latent_frames * (lh // cfg["patch_size"]) * (lw // cfg["patch_size"])
    tokens = video_tokens + cfg["max_text_seq_length"]
    hidden = cfg["num_attention_heads"] * cfg["attention_head_dim"]
    samples = 2 * args.batch_pairs  # winner and loser in one forward (GAPO/DPO)
    bf16 = 2
    # Gradient checkpointing keeps each block's inputs (hidden + text stream) for backward, and
    # recomputes one block at a time: its live activations (q, k, v, attention out, 4x MLP with
    # GELU input and output, norms, residuals; flash/SDPA attention keeps no tokens^2 matrix) are
    # ~16 hidden-sized tensors per token.
    per_block_saved = samples * tokens * hidden * bf16
    saved = cfg["num_layers"] * per_block_saved
    recompute = 16 * samples * tokens * hidden * bf16
    latent = latent_frames * cfg["out_channels"] * lh * lw
    text = cfg["max_text_seq_length"] * cfg["text_embed_dim"]
    # The pair cache (trainer.encode_pairs): winner + loser latents, one image-latent frame and the
    # prompt embedding, in bf16. Before: all 13 image-latent frames (12 of them zero padding) in
    # fp32: (3 x latent + text) x 4 bytes = 17.2 MB a pair.
    per_pair = (2 * latent + latent // latent_frames + text) * bf16
    per_pair_before = (3 * latent + text) * 4
    batch_tensors = args.batch_pairs * (3 * latent + text) * 4 * 4  # fp32 noisy/target/v copies
    gpu = {
        "transformer weights (bf16)": base * bf16,
        "LoRA weights (fp32)": lora * 4,
        "LoRA gradients (fp32)": lora * 4,
        "AdamW state (fp32 m, v)": lora * 8,
        "activations: checkpointed block inputs": saved,
        "activations: one block recomputed": recompute,
        "pair batch on the GPU (streamed)": batch_tensors,
        "pair cache on the GPU": 0,
        "T5 + VAE (offloaded after encoding)": 0,
        "CUDA context, allocator slack": int(3 * GIB),
    }
    train_peak = sum(gpu.values())
    # The encoding phase (before training): transformer + T5 + VAE, VAE-encoding one 49x480x720 clip
    # with diffusers' tiled/sliced causal conv cache (~10 GiB measured class on 80 GB cards).
    encode_peak = (base + t5 + vae) * bf16 + int(10 * GIB) + int(3 * GIB)
    cache_bytes = args.pairs * per_pair
    checkpoint_bytes = lora * (4 + 8) + 4096  # LoRA fp32 + AdamW state + trainer_state.json
    kept = min(args.keep_last + 1, max(1, args.steps // args.checkpoint_every))
    candidates = args.candidates_in_flight * args.video_mb * 2**20
    disk = {
        "CogVideoX-5B-I2V weights (bf16 transformer + T5-XXL + VAE)": (base + t5 + vae) * bf16,
        f"virtualenv (torch with CUDA libraries, ~{args.venv_gib:.0f} GiB)": int(
            args.venv_gib * GIB
        ),
        f"pair videos fetched for encoding ({2 * args.pairs} mp4 at ~{args.video_mb} MB)": int(
            2 * args.pairs * args.video_mb * 2**20
        ),
        f"latent cache (bf16, {per_pair / 1e6:.1f} MB a pair; was {per_pair_before / 1e6:.1f})": (
            cache_bytes
        ),
        f"checkpoints kept ({kept} = last {args.keep_last} + best)": kept * checkpoint_bytes,
        "final LoRA": lora * 4,
        f"generated candidates not yet imported ({args.candidates_in_flight})": int(candidates),
        "logs, metrics, pairs JSONL, run outputs": int(0.2 * GIB),
    }
    no_retention = max(1, args.steps // args.checkpoint_every) * checkpoint_bytes
    return {
        "params": {"transformer": base, "lora": lora, "t5": t5, "vae": vae},
        "tokens": tokens,
        "gpu": gpu,
        "gpu_train_peak": train_peak,
        "gpu_encode_peak": encode_peak,
        "gpu_peak": max(train_peak, encode_peak),
        "gpu_if_cache_on_gpu": train_peak + cache_bytes,
        "cache_bytes_per_pair": per_pair,
        "cache_bytes_per_pair_before": per_pair_before,
        "disk": disk,
        "disk_total": sum(disk.values()),
        "disk_without_retention": sum(disk.values()) - kept * checkpoint_bytes + no_retention,
    }


def print_plan(args) -> None:
    result = plan(args)
    gib = lambda b: f"{b / GIB:7.1f} GiB"  # noqa: E731
    p = result["params"]
    print(
        f"GAPO plan: CogVideoX-5B-I2V, 49x480x720 ({result['tokens']} tokens), LoRA rank "
        f"{args.lora_rank}, {args.batch_pairs} pair(s) a step (winner + loser in one forward), "
        f"{args.pairs} pairs, {args.steps} steps, checkpoint every {args.checkpoint_every}"
    )
    print(
        f"  parameters: transformer {p['transformer'] / 1e9:.2f} B, LoRA {p['lora'] / 1e6:.1f} M, "
        f"T5-XXL encoder {p['t5'] / 1e9:.2f} B, VAE {p['vae'] / 1e6:.0f} M"
    )
    print("  GPU memory while training (planned):")
    for name, value in result["gpu"].items():
        print(f"    {name:<44} {gib(value)}")
    print(f"    {'peak while training':<44} {gib(result['gpu_train_peak'])}")
    print(f"    {'peak while encoding pairs (T5 + VAE live)':<44} {gib(result['gpu_encode_peak'])}")
    gpu_budget = 0.8 * 80e9
    fits = result["gpu_peak"] <= gpu_budget
    print(
        f"  planned peak: {gib(result['gpu_peak'])} of 80 GB; budget 80% = {gib(gpu_budget)} -> "
        f"{'fits' if fits else 'DOES NOT FIT'} (with the cache on the GPU: "
        f"{gib(result['gpu_if_cache_on_gpu'])})"
    )
    print(
        f"  pair cache: {result['cache_bytes_per_pair'] / 1e6:.1f} MB a pair "
        f"(before: {result['cache_bytes_per_pair_before'] / 1e6:.1f} MB, fp32 with 12 zero "
        f"image-latent frames)"
    )
    print("  disk of the GPU host:")
    for name, value in result["disk"].items():
        print(f"    {name:<72} {gib(value)}")
    disk_budget = 0.8 * 64 * GIB
    fits = result["disk_total"] <= disk_budget
    print(
        f"  disk total: {gib(result['disk_total'])} of 64 GiB; budget 80% = {gib(disk_budget)} -> "
        f"{'fits' if fits else 'DOES NOT FIT'} (keeping every checkpoint: "
        f"{gib(result['disk_without_retention'])})"
    )


# ----------------------------------------------------------------------------------------------
# --host-memory N: peak host memory (RSS) of the encoding phase and of training, tiny widths
# ----------------------------------------------------------------------------------------------


def host_memory(pairs: int) -> dict:
    """Encode ``pairs`` synthetic pairs (tiny preset) and train 3 steps; peak RSS after each."""
    import threading

    import psutil

    from scoring.anime_reward.video import write_video
    from training.alignment.cogvideox import smooth_videos
    from training.alignment.pairs import Pair
    from training.alignment.trainer import encode_pairs, train

    components = load_generator("tiny")
    shape = components.shape
    process = psutil.Process()
    rss = lambda: process.memory_info().rss  # noqa: E731

    class Peak:
        """The highest RSS seen while the block runs (sampled every 2 ms): the phase's own peak,
        not the lifetime maximum of ``ru_maxrss``, which the video writing before would set."""

        def __enter__(self):
            self.value, self.done = rss(), threading.Event()
            self.thread = threading.Thread(target=self.sample, daemon=True)
            self.thread.start()
            return self

        def sample(self):
            while not self.done.wait(0.002):
                self.value = max(self.value, rss())

        def __exit__(self, *exc):
            self.done.set()
            self.thread.join()
            self.value = max(self.value, rss())

    with tempfile.TemporaryDirectory() as tmp:
        g = torch.Generator().manual_seed(0)
        records = []
        for i in range(pairs):
            videos = ((smooth_videos(2, shape, g) + 1) * 127.5).round().to(torch.uint8)
            paths = [
                write_video(v.permute(1, 2, 3, 0).numpy(), Path(tmp) / f"{i}-{k}.mp4", fps=8)
                for k, v in enumerate(videos)
            ]
            records.append(
                Pair(i, 2 * i, 2 * i + 1, 0.8, 0.2, str(paths[0]), str(paths[1]), f"pair {i}", "")
            )
        baseline = rss()
        with Peak() as encoding:
            cache = encode_pairs(
                records, components, cache_path=Path(tmp) / "c.safetensors",
                image_noise_mean=-3.0, seed=0,
            )  # fmt: skip
        cache_bytes = sum(t.numel() * t.element_size() for t in cache.values())
        del cache
        with Peak() as training:
            train(
                TrainConfig(output_dir=tmp, max_steps=3, lora_rank=4, checkpoint_every=0,
                            validation_share=0.0),
                records,
                components=components,
            )  # fmt: skip
        mib = lambda b: round(b / 2**20, 2)  # noqa: E731
        return {
            "pairs": pairs,
            "cache_mib": mib(cache_bytes),
            "rss_before_encoding_mib": mib(baseline),
            "encoding_peak_growth_mib": mib(encoding.value - baseline),
            "training_peak_growth_mib": mib(training.value - baseline),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=["tiny", "cogvideox-5b-i2v"], default="tiny")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--lora-rank", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--gen-steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=6.0)
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument(
        "--peak-tflops", type=float, default=None, help="Accelerator bf16 dense peak for MFU"
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="Print the planned peak GPU memory and disk of a paper-scale run (no GPU needed)",
    )
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-pairs", type=int, default=1)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--keep-last", type=int, default=2)
    parser.add_argument("--video-mb", type=float, default=1.5, help="size of one 6 s pair video")
    parser.add_argument(
        "--venv-gib", type=float, default=8.0, help="the virtualenv with CUDA torch (estimate)"
    )
    parser.add_argument(
        "--candidates-in-flight",
        type=int,
        default=64,
        help="generated videos on local disk before their import (one chunk's worth)",
    )
    parser.add_argument(
        "--host-memory",
        type=int,
        default=0,
        metavar="PAIRS",
        help="peak host memory of encoding PAIRS pairs and of training on them (tiny preset)",
    )
    args = parser.parse_args()
    if args.host_memory:
        print(json.dumps(host_memory(args.host_memory)))
        return
    if args.plan:
        print_plan(args)
        if not torch.cuda.is_available():
            print(
                "  (no GPU here: the real peak is measured with --preset cogvideox-5b-i2v on CUDA)"
            )
            return

    device = torch.device(args.device)
    bf16 = device.type == "cuda"
    dtype = torch.bfloat16 if bf16 else torch.float32
    if args.preset == "tiny":
        components = load_generator("tiny", device=device, dtype=dtype)
    else:
        components = build_full_size_random(device, dtype)
    transformer = components.transformer
    shape = components.shape
    add_lora(transformer, rank=args.lora_rank, alpha=args.lora_rank)
    transformer.enable_gradient_checkpointing()
    transformer.train()
    batch = synthetic_batch(components, device)
    latent = batch["winner_latents"].shape
    tokens = (
        latent[1] * (latent[3] // 2) * (latent[4] // 2) + transformer.config.max_text_seq_length
    )
    per_sample = forward_flops(transformer, tokens)

    results = {
        "preset": args.preset,
        "device": torch.cuda.get_device_name() if bf16 else "cpu",
        "video": f"{shape.frames} frames at {shape.height}x{shape.width}",
        "tokens": tokens,
        "lora_rank": args.lora_rank,
        "dtype": str(dtype).removeprefix("torch."),
        "gradient_checkpointing": True,
    }
    for loss_type in ("gapo", "sft"):
        config = TrainConfig(
            output_dir="-", loss_type=loss_type, image_dropout=0.0, text_dropout=0.0
        )
        step_batch = batch
        if loss_type == "sft":  # SFT on the same two videos: winner and loser as two samples
            step_batch = {
                **batch,
                "winner_latents": torch.cat([batch["winner_latents"], batch["loser_latents"]]),
                "image_latents": torch.cat([batch["image_latents"]] * 2),
                "prompt_embeds": torch.cat([batch["prompt_embeds"]] * 2),
            }
        seconds, peak = time_steps(
            components,
            step_batch,
            config,
            device,
            warmup=args.warmup,
            repeats=args.repeats,
            bf16=bf16,
        )
        flops = per_sample * 2 * (2 + (1 if loss_type == "gapo" else 0))
        results[loss_type] = {
            "step_s": seconds,
            "peak_memory_gib": peak,
            "model_tflop": flops / 1e12,
            "achieved_tflops": flops / seconds / 1e12,
        }
    results["gapo_over_sft"] = results["gapo"]["step_s"] / results["sft"]["step_s"]
    results["within_1.4x_budget"] = results["gapo_over_sft"] <= 1.4
    peak_tflops = args.peak_tflops
    if peak_tflops is None and bf16:
        peak_tflops = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in results["device"]), None)
    for loss_type in ("gapo", "sft"):
        results[loss_type]["mfu"] = (
            (results[loss_type]["achieved_tflops"] / peak_tflops) if peak_tflops else None
        )

    if not args.skip_generation:
        transformer.eval()
        transformer.disable_adapters()  # generation benchmarks the base generator
        transformer.disable_gradient_checkpointing()
        results["generation"] = {
            "steps": args.gen_steps,
            "guidance": args.guidance,
            **bench_generation(
                components,
                device,
                steps=args.gen_steps,
                guidance=args.guidance,
                repeats=max(1, args.repeats - 1),
            ),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
