"""GAPO / Diffusion-DPO / SFT fine-tuning of the CogVideoX I2V generator with LoRA. One file.

Read top to bottom: config -> data (pairs, encoded once and cached) -> model (LoRA through peft;
the reference is the same transformer with its adapters disabled) -> one training step -> the
loop (logging, checkpoints, resume) -> saving LoRA weights that diffusers' ``load_lora_weights``
reads. No Django: callers pass a pairs JSONL path and a config, and get a ``TrainResult``.

Multi-GPU: ``accelerate launch -m training.alignment.trainer --pairs pairs.jsonl --output-dir out``; each
process takes its share of every global batch and DDP averages the gradients.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from labelhub.devices import pick_device
from labelhub.progress import Progress
from scoring.anime_reward.video import read_image, read_video_frames
from training.alignment.cogvideox import GeneratorComponents, load_generator
from training.alignment.config import (
    LORA_TARGET_MODULES,
    LORA_WEIGHT_NAME,
    TrainConfig,
)
from training.alignment.gapo import per_sample_mse, preference_loss, sft_loss
from training.alignment.pairs import Pair, read_pairs_jsonl
from training.alignment.sampling import build_pipeline


@dataclass
class TrainResult:
    lora_dir: str
    steps: int
    metrics: list[dict]
    checkpoint_dir: str


# ----------------------------------------------------------------------------------------------
# Data: every pair video, first frame and prompt is encoded once and cached on disk
# ----------------------------------------------------------------------------------------------


def video_to_tensor(path: str, *, frames: int, height: int, width: int) -> torch.Tensor:
    """Read a clip as ``[C, F, H, W]`` in [-1, 1]: first ``frames`` frames (last one repeated if
    short), resized and centre-cropped to the preset's size."""
    array = read_video_frames(path, max_frames=frames)
    if len(array) < frames:
        array = np.concatenate([array, np.repeat(array[-1:], frames - len(array), axis=0)])
    video = torch.from_numpy(array).permute(3, 0, 1, 2).float() / 127.5 - 1.0  # C F H W
    return resize_crop(video, height=height, width=width)


def image_to_tensor(path: str, *, height: int, width: int) -> torch.Tensor:
    """Read a condition image as ``[C, 1, H, W]`` in [-1, 1] at the preset's size, resized the
    way the diffusers I2V pipeline does it at generation (``VaeImageProcessor``: stretched to
    width x height with Lanczos, no crop), so training sees the conditions generation sees."""
    image = read_image(path)
    if image.size != (width, height):
        image = image.resize((width, height), resample=Image.LANCZOS)
    array = np.array(image)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(1).float() / 127.5 - 1.0


def resize_crop(video: torch.Tensor, *, height: int, width: int) -> torch.Tensor:
    _, _, h, w = video.shape
    if (h, w) == (height, width):
        return video
    scale = max(height / h, width / w)
    size = (max(height, round(h * scale)), max(width, round(w * scale)))
    video = torch.nn.functional.interpolate(
        video.transpose(0, 1), size=size, mode="bilinear", antialias=True, align_corners=False
    ).transpose(0, 1)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    return video[:, :, top : top + height, left : left + width]


@torch.no_grad()
def encode_pairs(
    pairs: list[Pair],
    components: GeneratorComponents,
    *,
    cache_path: Path,
    image_noise_mean: float,
    seed: int,
) -> dict[str, torch.Tensor]:
    """Latents of every winner and loser video ``[N, F', C, H', W']`` (scaled), first-frame latents
    padded to the video's latent length, and prompt embeddings; loaded from ``cache_path`` when it
    was written for the same pairs."""
    from safetensors.torch import load_file, save_file

    key = json.dumps([[p.winner_video, p.loser_video, p.prompt, p.first_frame] for p in pairs])
    meta_path = cache_path.with_suffix(".json")
    if cache_path.exists() and meta_path.exists() and meta_path.read_text() == key:
        return load_file(cache_path)

    vae, shape = components.vae, components.shape
    device, dtype = vae.device, vae.dtype
    scaling = vae.config.scaling_factor
    generator = torch.Generator().manual_seed(seed)

    def video_latent(path: str) -> torch.Tensor:
        video = video_to_tensor(path, frames=shape.frames, height=shape.height, width=shape.width)
        latent = vae.encode(video.unsqueeze(0).to(device, dtype)).latent_dist.mode()
        return (latent * scaling).permute(0, 2, 1, 3, 4)[0].float().cpu()  # F' C H' W'

    def image_latent(path: str, latent_frames: int) -> torch.Tensor:
        image = image_to_tensor(path, height=shape.height, width=shape.width)
        # Small noise on the condition frame, as the diffusers CogVideoX I2V LoRA script does.
        sigma = math.exp(image_noise_mean + 0.5 * torch.randn((), generator=generator).item())
        image = image + sigma * torch.randn(image.shape, generator=generator)
        latent = vae.encode(image.unsqueeze(0).to(device, dtype)).latent_dist.mode()
        latent = (latent * scaling).permute(0, 2, 1, 3, 4)[0].float().cpu()  # 1 C H' W'
        padding = latent.new_zeros((latent_frames - 1, *latent.shape[1:]))
        return torch.cat([latent, padding])

    def prompt_embedding(prompt: str) -> torch.Tensor:
        ids = components.tokenizer(
            prompt,
            padding="max_length",
            max_length=components.max_text_tokens,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        ).input_ids
        return components.text_encoder(ids.to(device))[0][0].float().cpu()

    videos: dict[str, torch.Tensor] = {}
    prompts: dict[str, torch.Tensor] = {}
    winners, losers, images, texts = [], [], [], []
    for pair in pairs:
        for path in (pair.winner_video, pair.loser_video):
            if path not in videos:
                videos[path] = video_latent(path)
        winners.append(videos[pair.winner_video])
        losers.append(videos[pair.loser_video])
        first_frame = pair.first_frame or pair.winner_video
        if pair.first_frame:
            images.append(image_latent(first_frame, winners[-1].shape[0]))
        else:  # no condition image stored: the winner's first frame is the condition
            images.append(torch.cat([winners[-1][:1], torch.zeros_like(winners[-1][1:])]))
        if pair.prompt not in prompts:
            prompts[pair.prompt] = prompt_embedding(pair.prompt)
        texts.append(prompts[pair.prompt])
    cache = {
        "winner_latents": torch.stack(winners),
        "loser_latents": torch.stack(losers),
        "image_latents": torch.stack(images),
        "prompt_embeds": torch.stack(texts),
        "winner_rewards": torch.tensor([p.winner_reward for p in pairs], dtype=torch.float32),
        "loser_rewards": torch.tensor([p.loser_reward for p in pairs], dtype=torch.float32),
    }
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(cache, str(cache_path))
    meta_path.write_text(key)
    return cache


# ----------------------------------------------------------------------------------------------
# Model: LoRA on the transformer's attention; the reference is the same module, adapters off
# ----------------------------------------------------------------------------------------------


def add_lora(transformer: torch.nn.Module, *, rank: int, alpha: int) -> list[torch.nn.Parameter]:
    """Add a trainable LoRA adapter (peft) to the attention projections; returns its parameters
    (kept in float32 even when the base weights are bf16)."""
    from peft import LoraConfig

    transformer.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=alpha or rank,
            init_lora_weights=True,
            target_modules=LORA_TARGET_MODULES,
        )
    )
    params = [p for n, p in transformer.named_parameters() if "lora_" in n]
    for p in params:
        p.data = p.data.float()
        p.requires_grad_(True)
    return params


class reference_model:
    """Context manager: inside it the transformer computes the reference (base) prediction."""

    def __init__(self, transformer):
        self.transformer = transformer

    def __enter__(self):
        self.transformer.disable_adapters()
        return self.transformer

    def __exit__(self, *exc):
        self.transformer.enable_adapters()
        return False


def rotary_embedding(components: GeneratorComponents, latent_frames: int, device) -> tuple | None:
    """The 3-D rotary embedding the pipeline computes for this video size."""
    if not components.transformer.config.use_rotary_positional_embeddings:
        return None
    pipe = build_pipeline(components)
    return pipe._prepare_rotary_positional_embeddings(
        components.shape.height, components.shape.width, latent_frames, device
    )


def predict_v(
    transformer,
    *,
    noisy: torch.Tensor,
    image_latents: torch.Tensor,
    prompt_embeds: torch.Tensor,
    timesteps: torch.Tensor,
    rotary,
) -> torch.Tensor:
    """The transformer's v-prediction; the first-frame latent is concatenated on the channel axis."""
    hidden = torch.cat([noisy, image_latents], dim=2)
    return transformer(
        hidden_states=hidden,
        encoder_hidden_states=prompt_embeds,
        timestep=timesteps,
        image_rotary_emb=rotary,
        return_dict=False,
    )[0]


# ----------------------------------------------------------------------------------------------
# One training step
# ----------------------------------------------------------------------------------------------


def training_step(
    *,
    transformer,
    scheduler,
    batch: dict[str, torch.Tensor],
    config: TrainConfig,
    rotary,
    generator: torch.Generator,
    autocast_dtype: torch.dtype | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss for one batch of pairs and the figures to log; call ``.backward()`` on the loss.

    One timestep and one noise draw per pair, shared by its winner and loser (METHOD.md).
    """
    winners, losers = batch["winner_latents"], batch["loser_latents"]
    n, device = winners.shape[0], winners.device
    timesteps = torch.randint(
        0, scheduler.config.num_train_timesteps, (n,), generator=generator
    ).to(device)
    noise = torch.randn(winners.shape, generator=generator).to(device)
    keep_image = (torch.rand(n, generator=generator) >= config.image_dropout).to(device)
    image_latents = batch["image_latents"] * keep_image.view(n, 1, 1, 1, 1)

    if config.loss_type == "sft":
        latents, noise2, t2 = winners, noise, timesteps
        images, texts = image_latents, batch["prompt_embeds"]
    else:  # winner and loser side by side: one forward for both
        latents = torch.cat([winners, losers])
        noise2, t2 = torch.cat([noise, noise]), torch.cat([timesteps, timesteps])
        images, texts = (
            torch.cat([image_latents, image_latents]),
            torch.cat([batch["prompt_embeds"]] * 2),
        )
    noisy = scheduler.add_noise(latents, noise2, t2)
    target = scheduler.get_velocity(latents, noise2, t2)
    weight_dtype = next(transformer.parameters()).dtype
    inputs = {
        "noisy": noisy.to(weight_dtype),
        "image_latents": images.to(weight_dtype),
        "prompt_embeds": texts.to(weight_dtype),
        "timesteps": t2,
        "rotary": rotary,
    }

    autocast = torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    with autocast:
        policy_mse = per_sample_mse(predict_v(transformer, **inputs), target)
    if config.loss_type == "sft":
        loss = sft_loss(policy_mse)
        return loss, {"loss": loss.item(), "policy_mse": policy_mse.mean().item()}

    base = getattr(transformer, "module", transformer)  # DDP-wrapped under accelerate
    with torch.no_grad(), reference_model(base), autocast:
        reference_mse = per_sample_mse(predict_v(base, **inputs), target)
    out = preference_loss(
        policy_winner_mse=policy_mse[:n],
        policy_loser_mse=policy_mse[n:],
        reference_winner_mse=reference_mse[:n],
        reference_loser_mse=reference_mse[n:],
        winner_reward=batch["winner_rewards"],
        loser_reward=batch["loser_rewards"],
        beta=config.beta,
        alpha=config.alpha,
        loss_type=config.loss_type,
    )
    return out.loss, {
        "loss": out.loss.item(),
        "implicit_accuracy": out.implicit_accuracy.item(),
        "reward_margin": out.reward_margin.item(),
        "gap": out.gap.mean().item(),
        "policy_mse": policy_mse.mean().item(),
        "reference_mse": reference_mse.mean().item(),
    }


# ----------------------------------------------------------------------------------------------
# Checkpoints and the final LoRA
# ----------------------------------------------------------------------------------------------


def lora_state_dict(transformer) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    return {
        k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(transformer).items()
    }


def save_lora(transformer, directory: Path, config: TrainConfig) -> Path:
    """Write the adapter as diffusers LoRA safetensors (``load_lora_weights`` reads it back)."""
    from diffusers import CogVideoXImageToVideoPipeline

    directory.mkdir(parents=True, exist_ok=True)
    CogVideoXImageToVideoPipeline.save_lora_weights(
        directory,
        transformer_lora_layers=lora_state_dict(transformer),
        weight_name=LORA_WEIGHT_NAME,
        transformer_lora_adapter_metadata={
            "r": config.lora_rank,
            "lora_alpha": config.lora_alpha or config.lora_rank,
            "target_modules": LORA_TARGET_MODULES,
        },
    )
    return directory


def save_checkpoint(
    directory: Path, *, transformer, optimizer, step: int, config: TrainConfig, metrics: list[dict]
) -> Path:
    """LoRA weights + optimizer state + step: all a resume needs (noise is a function of step)."""
    tmp = directory.with_name(directory.name + ".tmp")
    save_lora(transformer, tmp, config)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "trainer_state.json").write_text(
        json.dumps({"step": step, "config": asdict(config), "metrics": metrics})
    )
    if directory.exists():
        import shutil

        shutil.rmtree(directory)
    tmp.rename(directory)  # a checkpoint directory is complete or absent
    return directory


def load_lora_weights_into(transformer, directory: Path) -> None:
    """Set the adapter's weights from a saved LoRA (same rank and target modules)."""
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(Path(directory) / LORA_WEIGHT_NAME)
    state = {k.removeprefix("transformer."): v for k, v in state.items()}
    try:
        result = set_peft_model_state_dict(transformer, state)
    except RuntimeError as error:  # shape mismatch: another rank
        raise ValueError(
            f"the LoRA in {directory} does not fit this adapter (lora_rank?): {error}"
        ) from error
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(
            f"the LoRA in {directory} has weights this adapter lacks: {unexpected[:3]}"
        )


BEST_CHECKPOINT = "best_checkpoint.json"


def prune_checkpoints(output_dir: Path, *, keep_last: int, keep_best: bool) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (0: keep all) and, if ``keep_best``,
    the best one recorded in ``best_checkpoint.json``; returns what was deleted."""
    import shutil

    if keep_last == 0:
        return []
    found = sorted(output_dir.glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))
    keep = set(found[-keep_last:])
    best_file = output_dir / BEST_CHECKPOINT
    if keep_best and best_file.exists():
        keep.add(output_dir / json.loads(best_file.read_text())["checkpoint"])
    deleted = [path for path in found if path not in keep]
    for path in deleted:
        shutil.rmtree(path)
    return deleted


def record_best(output_dir: Path, checkpoint: Path, loss: float) -> bool:
    """Remember ``checkpoint`` as the best if its loss is the lowest so far; True if it is."""
    best_file = output_dir / BEST_CHECKPOINT
    if best_file.exists():
        best = json.loads(best_file.read_text())
        if (output_dir / best["checkpoint"]).exists() and best["loss"] <= loss:
            return False
    best_file.write_text(json.dumps({"checkpoint": checkpoint.name, "loss": loss}))
    return True


class PairCache:
    """The encoded pairs, kept in host memory (pinned on CUDA) and moved to the device one batch
    at a time: the whole fp32 cache of 2,000 5B pairs is ~34 GB, which must not sit on the GPU."""

    def __init__(self, tensors: dict[str, torch.Tensor], device: torch.device):
        self.device = device
        pin = device.type == "cuda" and torch.cuda.is_available()
        self.tensors = {k: (v.pin_memory() if pin else v) for k, v in tensors.items()}

    def __len__(self) -> int:
        return len(self.tensors["winner_latents"])

    def shape(self, name: str) -> torch.Size:
        return self.tensors[name].shape

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        indices = indices.cpu()
        return {
            k: v.index_select(0, indices).to(self.device, non_blocking=True)
            for k, v in self.tensors.items()
        }


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = sorted(output_dir.glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))
    return found[-1] if found else None


def load_checkpoint(directory: Path, *, transformer, optimizer) -> tuple[int, list[dict]]:
    load_lora_weights_into(transformer, directory)
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    trainer_state = json.loads((directory / "trainer_state.json").read_text())
    return trainer_state["step"], trainer_state["metrics"]


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


def pair_order(num_pairs: int, *, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(
        num_pairs, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)
    )


def train(
    config: TrainConfig,
    pairs: list[Pair],
    *,
    components: GeneratorComponents | None = None,
    on_progress: Progress | None = None,
    on_checkpoint: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a LoRA policy on ``pairs`` and write it to ``<output_dir>/lora``.

    ``components`` lets a caller pass an already built generator (it is modified: a LoRA adapter
    is added to its transformer). ``on_progress(step, total, metrics, message)`` is called every
    step and may raise to stop the run; ``on_checkpoint(path)`` after each checkpoint is written.
    """
    from accelerate import Accelerator

    if not pairs:
        raise ValueError("no preference pairs to train on")
    if not config.output_dir:
        raise ValueError("output_dir is required")
    output_dir = Path(config.output_dir)
    use_cuda = pick_device(config.device) == "cuda"
    bf16 = use_cuda and config.mixed_precision != "no"
    accelerator = Accelerator(cpu=not use_cuda, mixed_precision="bf16" if bf16 else "no")
    report = (
        on_progress if (on_progress and accelerator.is_main_process) else (lambda *a, **k: None)
    )
    weight_dtype = torch.bfloat16 if bf16 else torch.float32

    # Model
    if components is None:
        components = load_generator(
            config.preset,
            path=config.model_path or None,
            device=accelerator.device,
            dtype=weight_dtype,
        )
    transformer = components.transformer
    report(
        0, config.max_steps, None, f"{config.loss_type}: encoding {len(pairs)} pairs (cached once)"
    )
    cache = encode_pairs(
        pairs,
        components,
        cache_path=output_dir / "latent-cache.safetensors",
        image_noise_mean=config.image_noise_mean,
        seed=config.seed,
    )
    cache = PairCache(cache, accelerator.device)  # host memory; batches stream to the device
    offloaded = []
    if config.offload_encoders and accelerator.device.type == "cuda":
        # T5 and the VAE are only needed to encode: free their GPU memory for training.
        for name in ("text_encoder", "vae"):
            module = getattr(components, name)
            if module is not None and next(module.parameters()).device.type == "cuda":
                module.to("cpu")
                offloaded.append(name)
        torch.cuda.empty_cache()
    lora_params = add_lora(transformer, rank=config.lora_rank, alpha=config.lora_alpha)
    if config.gradient_checkpointing if config.gradient_checkpointing is not None else use_cuda:
        transformer.enable_gradient_checkpointing()
    transformer.train()
    optimizer = torch.optim.AdamW(
        lora_params, lr=config.learning_rate, weight_decay=config.weight_decay
    )
    rotary = rotary_embedding(components, cache.shape("winner_latents")[1], accelerator.device)
    model, optimizer = accelerator.prepare(transformer, optimizer)

    # Resume
    step, metrics = 0, []
    resume = (
        latest_checkpoint(output_dir)
        if config.resume_from == "latest"
        else (Path(config.resume_from) if config.resume_from else None)
    )
    if resume is not None:
        step, metrics = load_checkpoint(resume, transformer=transformer, optimizer=optimizer)
        report(step, config.max_steps, None, f"resumed from {resume} at step {step}")
    elif config.init_lora:
        # Iterating the loop: start from the last round's policy instead of a zero LoRA.
        load_lora_weights_into(transformer, Path(config.init_lora))
        report(0, config.max_steps, None, f"starting from the policy LoRA in {config.init_lora}")

    num_pairs = len(pairs)
    global_batch = config.batch_pairs * accelerator.num_processes
    steps_per_epoch = max(1, num_pairs // global_batch)
    last_checkpoint = str(resume or "")
    first_step, started = step, time.monotonic()
    window_losses: list[float] = []  # training losses since the last checkpoint (picks the best)

    def checkpoint(step: int) -> str:
        path = save_checkpoint(
            output_dir / f"checkpoint-{step}",
            transformer=transformer,
            optimizer=optimizer,
            step=step,
            config=config,
            metrics=metrics,
        )
        if window_losses:
            record_best(output_dir, path, sum(window_losses) / len(window_losses))
        window_losses.clear()
        prune_checkpoints(
            output_dir,
            keep_last=config.keep_last_checkpoints,
            keep_best=config.keep_best_checkpoint,
        )
        if on_checkpoint:
            on_checkpoint(str(path))
        return str(path)

    while step < config.max_steps:
        # Pair order, timesteps and noise are functions of (seed, step): a resume draws the same.
        epoch, within = divmod(step, steps_per_epoch)
        order = pair_order(num_pairs, seed=config.seed, epoch=epoch)
        indices = order[(within * global_batch + torch.arange(global_batch)) % num_pairs]
        indices = indices[accelerator.process_index :: accelerator.num_processes]
        batch = cache.batch(indices)
        generator = torch.Generator().manual_seed(
            config.seed * 1_000_003 + step * 97 + accelerator.process_index
        )

        loss, logs = training_step(
            transformer=model,
            scheduler=components.scheduler,
            batch=batch,
            config=config,
            rotary=rotary,
            generator=generator,
            autocast_dtype=torch.bfloat16 if bf16 else None,
        )
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(lora_params, config.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window_losses.append(logs["loss"])

        logs["grad_norm"] = float(grad_norm)
        logs["seconds_per_step"] = (time.monotonic() - started) / (step - first_step)
        if step % config.log_every == 0 or step == config.max_steps:
            metrics.append({"step": step, **logs})
            report(step, config.max_steps, logs, "")
        else:
            report(step, config.max_steps, None, "")
        if (
            accelerator.is_main_process
            and config.checkpoint_every
            and step % config.checkpoint_every == 0
            and step < config.max_steps
        ):
            last_checkpoint = checkpoint(step)

    accelerator.wait_for_everyone()
    lora_dir = output_dir / "lora"
    if accelerator.is_main_process:
        last_checkpoint = checkpoint(step)
        save_lora(transformer, lora_dir, config)
        (output_dir / "metrics.json").write_text(json.dumps(metrics))
    for name in offloaded:  # the caller may sample with these components next
        getattr(components, name).to(accelerator.device)
    report(step, config.max_steps, None, f"done: LoRA written to {lora_dir}")
    return TrainResult(
        lora_dir=str(lora_dir), steps=step, metrics=metrics, checkpoint_dir=last_checkpoint
    )


def main(argv: list[str] | None = None) -> None:
    """CLI (also under ``accelerate launch``): every TrainConfig field is a --flag."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", required=True, help="Pairs JSONL (training.alignment.pairs.write_pairs_jsonl)"
    )
    for f in fields(TrainConfig):
        kind = {"int": int, "float": float}.get(str(f.type).split(" ")[0], str)
        parser.add_argument(
            "--" + f.name.replace("_", "-"), type=kind, default=None, help=f.metadata["help"]
        )
    args = vars(parser.parse_args(argv))
    pairs = read_pairs_jsonl(args.pop("pairs"))
    values = {k: v for k, v in args.items() if v is not None}
    for f in fields(TrainConfig):
        if str(f.type).startswith("bool") and f.name in values:
            values[f.name] = str(values[f.name]).lower() in ("1", "true", "yes")
    result = train(
        TrainConfig(**values),
        pairs,
        on_progress=lambda s, t, m=None, msg="": print(f"step {s}/{t} {m or ''} {msg}", flush=True),
    )
    print(json.dumps({"lora_dir": result.lora_dir, "steps": result.steps}))


if __name__ == "__main__":
    main()
