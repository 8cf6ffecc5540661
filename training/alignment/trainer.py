"""GAPO / Diffusion-DPO / SFT fine-tuning of the CogVideoX I2V generator with LoRA. One file.

Read top to bottom: config -> data (pairs, encoded once and cached) -> model (LoRA through peft;
the reference is the same transformer with its adapters disabled) -> one training step -> the
loop (logging, checkpoints, resume) -> saving LoRA weights that diffusers' ``load_lora_weights``
reads. No Django: callers pass a pairs JSONL path and a config, and get a ``TrainResult``.

Multi-GPU: ``accelerate launch -m training.alignment.trainer --pairs pairs.jsonl --output-dir out``;
the main process encodes the pair cache behind a barrier, each process takes its share of every
global batch (``batch_pairs``, the same whatever the number of processes) and DDP averages the
gradients; only the main process writes checkpoints and the LoRA.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from labelhub.devices import pick_device
from labelhub.ml import Progress
from scoring.anime_reward.video import read_image, read_video_frames
from training.alignment.cogvideox import GeneratorComponents, load_generator
from training.alignment.config import (
    LORA_TARGET_MODULES,
    LORA_WEIGHT_NAME,
    TrainConfig,
)
from training.alignment.gapo import per_sample_mse, preference_loss, sft_loss
from training.alignment.pairs import Pair, read_pairs_jsonl


@dataclass
class TrainResult:
    lora_dir: str
    steps: int
    metrics: list[dict]
    checkpoint_dir: str
    processes: int = 1


# ----------------------------------------------------------------------------------------------
# Data: every pair video, first frame and prompt is encoded once and cached on disk
# ----------------------------------------------------------------------------------------------

CACHE_FORMAT = 3  # bump when what the cache holds changes: older caches are then re-encoded


def clip_fps(path: str) -> float:
    """The frame rate a clip plays at (its stream's average rate)."""
    import av

    with av.open(str(path)) as container:
        rate = container.streams.video[0].average_rate
    if not rate or float(rate) <= 0:
        raise ValueError(f"{path}: no frame rate in the video stream")
    return float(rate)


def resample_indices(source_frames: int, source_fps: float, *, frames: int, fps: float) -> list:
    """Which source frame to show at each of the generator's ``frames`` ticks of ``fps``: the frame
    on screen at that time, so the clip keeps its duration and speed (a 24 fps clip gives every 3rd
    frame to an 8 fps generator). A clip shorter than ``frames / fps`` holds its last frame."""
    return [
        min(source_frames - 1, int(math.floor(i * source_fps / fps + 1e-6))) for i in range(frames)
    ]


def video_to_tensor(path: str, *, frames: int, height: int, width: int, fps: float) -> torch.Tensor:
    """Read a clip as ``[C, F, H, W]`` in [-1, 1] the way the generator sees video: resampled to
    ``frames`` frames at ``fps`` over the same duration (clips the policy did not make come at
    24 or 30 fps), each frame stretched to width x height as the I2V pipeline resizes its
    condition image (``VaeImageProcessor``: Lanczos, no crop)."""
    source_fps = clip_fps(path)
    wanted = resample_indices(10**9, source_fps, frames=frames, fps=fps)
    array = read_video_frames(path, max_frames=wanted[-1] + 1)
    picked = [array[i] for i in resample_indices(len(array), source_fps, frames=frames, fps=fps)]
    return torch.stack([_frame_tensor(Image.fromarray(f), height, width) for f in picked], dim=1)


def _frame_tensor(image: Image.Image, height: int, width: int) -> torch.Tensor:
    """``[C, H, W]`` in [-1, 1], stretched to width x height with Lanczos."""
    if image.size != (width, height):
        image = image.resize((width, height), resample=Image.LANCZOS)
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1.0


def image_to_tensor(path: str, *, height: int, width: int) -> torch.Tensor:
    """Read a condition image as ``[C, 1, H, W]`` in [-1, 1] at the preset's size, resized the
    way the diffusers I2V pipeline does it at generation (``VaeImageProcessor``: stretched to
    width x height with Lanczos, no crop), so training sees the conditions generation sees."""
    return _frame_tensor(read_image(path), height, width).unsqueeze(1)


def cache_key(pairs: list[Pair], components: GeneratorComponents, *, model_path: str,
              image_noise_mean: float, seed: int) -> str:  # fmt: skip
    """Everything that changes what the cache holds: the pairs (paths, prompts, rewards), the
    generator (preset, weights folder, VAE scaling), the video shape, and the encoding draws."""
    vae = components.vae.config
    values = {
        "format": CACHE_FORMAT,
        "pairs": [asdict(p) for p in pairs],
        "preset": components.preset,
        "model_path": model_path,
        "shape": asdict(components.shape),
        "vae": [vae.scaling_factor, getattr(vae, "invert_scale_latents", False)],
        "text_tokens": components.max_text_tokens,
        "image_noise_mean": image_noise_mean,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()


@torch.no_grad()
def encode_pairs(
    pairs: list[Pair],
    components: GeneratorComponents,
    *,
    cache_path: Path,
    image_noise_mean: float,
    seed: int,
    model_path: str = "",
) -> dict[str, torch.Tensor]:
    """Encode every pair once, or load the cache at ``cache_path`` written for the same key.

    Holds, in bf16 (what the transformer reads under mixed precision; half of fp32): winner and
    loser latents ``[N, F', C, H', W']``, the condition image's latent ``[N, 1, C, H', W']`` (only
    the informative frame: the pipeline pads the other F'-1 with zeros, done per batch), prompt
    embeddings ``[N, T, D]``, the empty prompt's embedding ``[T, D]`` (text dropout), and the
    rewards in fp32. Filled in place into tensors of the final size, so host memory grows by the
    cache's own size and no more.

    VAE handling follows diffusers' CogVideoX I2V LoRA script (examples/cogvideo/
    train_cogvideox_image_to_video_lora.py): ``latent_dist.sample()`` times
    ``vae.config.scaling_factor`` (0.7 for the 5B release), permuted to ``[F', C, H', W']``; the
    condition image gets noise of sigma ``exp(N(-3, 0.5))`` before encoding. Like the pipeline
    (``prepare_latents``), a VAE with ``invert_scale_latents`` divides the image latent instead.
    Sampled once (the script draws per epoch; a cache draws once), each video and image with a
    generator seeded by (seed, its path), so its latent does not depend on the other pairs or
    their order.
    """
    from safetensors.torch import load_file, save_file

    key = cache_key(
        pairs, components, model_path=model_path, image_noise_mean=image_noise_mean, seed=seed
    )
    meta_path = cache_path.with_suffix(".json")
    if cache_path.exists() and meta_path.exists() and json.loads(meta_path.read_text()) == key:
        return load_file(cache_path)

    vae, shape = components.vae, components.shape
    device, dtype = vae.device, vae.dtype
    scaling = vae.config.scaling_factor
    invert = bool(getattr(vae.config, "invert_scale_latents", False))

    def generator_for(*parts: str) -> torch.Generator:
        digest = hashlib.sha256(json.dumps([seed, *parts]).encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)

    def sample(pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        latent = vae.encode(pixels.unsqueeze(0).to(device, dtype)).latent_dist.sample(generator)
        return latent.permute(0, 2, 1, 3, 4)[0].float().cpu()  # F' C H' W'

    def video_latent(path: str) -> torch.Tensor:
        video = video_to_tensor(
            path, frames=shape.frames, height=shape.height, width=shape.width, fps=shape.fps
        )
        return sample(video, generator_for("video", path)) * scaling

    def image_latent(path: str) -> torch.Tensor:
        generator = generator_for("image", path)
        image = image_to_tensor(path, height=shape.height, width=shape.width)
        sigma = math.exp(image_noise_mean + 0.5 * torch.randn((), generator=generator).item())
        image = image + sigma * torch.randn(image.shape, generator=generator)
        latent = sample(image, generator)  # 1 C H' W'
        return latent / scaling if invert else latent * scaling

    def prompt_embedding(prompt: str) -> torch.Tensor:
        ids = components.tokenizer(
            prompt,
            padding="max_length",
            max_length=components.max_text_tokens,
            truncation=True,
            add_special_tokens=True,
            return_tensors="pt",
        ).input_ids
        # No attention mask: the pipeline's _get_t5_prompt_embeds encodes the padded ids as they are.
        return components.text_encoder(ids.to(device))[0][0].float().cpu()

    n = len(pairs)
    cache: dict[str, torch.Tensor] = {}
    videos: dict[str, tuple[str, int]] = {}  # a video in several pairs is encoded once
    prompts: dict[str, int] = {}

    def put(name: str, index: int, value: torch.Tensor) -> None:
        if name not in cache:  # the first value fixes the shape: allocate the whole cache once
            cache[name] = torch.empty((n, *value.shape), dtype=torch.bfloat16)
        cache[name][index] = value.to(torch.bfloat16)

    for i, pair in enumerate(pairs):
        for name, path in (
            ("winner_latents", pair.winner_video),
            ("loser_latents", pair.loser_video),
        ):
            if path in videos:
                source_name, j = videos[path]
                put(name, i, cache[source_name][j])
            else:
                put(name, i, video_latent(path))
                videos[path] = (name, i)
        if pair.first_frame:
            put("image_latents", i, image_latent(pair.first_frame))
        else:  # no condition image stored: the winner's first latent frame is the condition
            put("image_latents", i, cache["winner_latents"][i][:1])
        if pair.prompt in prompts:
            put("prompt_embeds", i, cache["prompt_embeds"][prompts[pair.prompt]])
        else:
            put("prompt_embeds", i, prompt_embedding(pair.prompt))
            prompts[pair.prompt] = i
    cache["empty_prompt_embeds"] = prompt_embedding("").to(torch.bfloat16)
    cache["winner_rewards"] = torch.tensor([p.winner_reward for p in pairs], dtype=torch.float32)
    cache["loser_rewards"] = torch.tensor([p.loser_reward for p in pairs], dtype=torch.float32)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_path.with_name(cache_path.name + ".tmp")
    save_file(cache, str(tmp))
    os.replace(tmp, cache_path)  # complete or absent: a killed encoder leaves no half cache
    meta_path.write_text(json.dumps(key))
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
    """The 3-D rotary embedding (cos, sin) of CogVideoX 1.0 for the preset's video size, from
    diffusers' public ``get_3d_rotary_pos_embed``: the latent grid in patches, placed in the grid
    the transformer was trained on (``sample_height`` x ``sample_width`` latents) by a centred
    resize-crop, as the I2V pipeline computes it at generation."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    config = components.transformer.config
    if not config.use_rotary_positional_embeddings:
        return None
    spatial = 2 ** (len(components.vae.config.block_out_channels) - 1)
    p = config.patch_size
    grid = (components.shape.height // (spatial * p), components.shape.width // (spatial * p))
    base = (config.sample_height // p, config.sample_width // p)
    return get_3d_rotary_pos_embed(
        embed_dim=config.attention_head_dim,
        crops_coords=grid_crop_region(grid, base),
        grid_size=grid,
        temporal_size=latent_frames,
        device=device,
    )


def grid_crop_region(grid: tuple[int, int], base: tuple[int, int]) -> tuple[tuple, tuple]:
    """Top-left and bottom-right of ``grid`` (rows, cols) resized into ``base`` keeping its aspect
    ratio and centred: where the rotary positions of a video of another size fall."""
    (h, w), (th, tw) = grid, base
    if h / w > th / tw:
        rows, cols = th, int(round(th / h * w))
    else:
        rows, cols = int(round(tw / w * h)), tw
    top, left = int(round((th - rows) / 2.0)), int(round((tw - cols) / 2.0))
    return (top, left), (top + rows, left + cols)


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


@dataclass
class StepDraws:
    """The random choices of one batch of pairs: per pair a timestep, a noise draw (shared by
    winner and loser, METHOD.md) and whether its condition image and prompt are kept."""

    timesteps: torch.Tensor
    noise: torch.Tensor
    keep_image: torch.Tensor
    keep_text: torch.Tensor


def draw_for_slots(
    config: TrainConfig, *, step: int, slots: list[int], latent_shape, num_timesteps: int
) -> StepDraws:
    """Draws for the pairs at positions ``slots`` of step ``step``'s global batch. Each position
    has its own generator seeded by (seed, step, position), so the draws do not depend on how the
    global batch is split over processes and accumulation steps, and a resume redraws them."""
    timesteps, noise, keep_image, keep_text = [], [], [], []
    for slot in slots:
        g = torch.Generator().manual_seed(config.seed * 1_000_003 + step * 9_973 + slot)
        timesteps.append(torch.randint(0, num_timesteps, (1,), generator=g))
        noise.append(torch.randn(tuple(latent_shape), generator=g))
        keep_image.append(torch.rand(1, generator=g) >= config.image_dropout)
        keep_text.append(torch.rand(1, generator=g) >= config.text_dropout)
    return StepDraws(
        torch.cat(timesteps), torch.stack(noise), torch.cat(keep_image), torch.cat(keep_text)
    )


def condition_inputs(batch: dict[str, torch.Tensor], draws: StepDraws, latent_frames: int):
    """Image latents padded to the video's latent length (the informative first frame, then
    zeros, as the I2V pipeline pads them) and prompt embeddings, with the dropped ones replaced:
    a dropped image by zeros (diffusers' I2V LoRA script, ``noised_image_dropout``), a dropped
    prompt by the empty prompt's embedding (what the sampler's unconditional branch sees)."""
    image = batch["image_latents"]
    n, device = image.shape[0], image.device
    padding = image.new_zeros((n, latent_frames - image.shape[1], *image.shape[2:]))
    image = torch.cat([image, padding], dim=1) * draws.keep_image.to(device).view(n, 1, 1, 1, 1)
    empty = batch["empty_prompt_embeds"].expand_as(batch["prompt_embeds"])
    keep_text = draws.keep_text.to(device).view(n, 1, 1)
    texts = torch.where(keep_text, batch["prompt_embeds"], empty)
    return image, texts


def training_step(
    *,
    transformer,
    scheduler,
    batch: dict[str, torch.Tensor],
    draws: StepDraws,
    config: TrainConfig,
    rotary,
    autocast_dtype: torch.dtype | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss for one batch of pairs and the figures to log; call ``.backward()`` on the loss."""
    winners, losers = batch["winner_latents"], batch["loser_latents"]
    n, device = winners.shape[0], winners.device
    timesteps, noise = draws.timesteps.to(device), draws.noise.to(device, torch.float32)
    image_latents, prompt_embeds = condition_inputs(batch, draws, winners.shape[1])
    winners, losers = winners.float(), losers.float()

    if config.loss_type == "sft":
        latents, noise2, t2 = winners, noise, timesteps
        images, texts = image_latents, prompt_embeds
    else:  # winner and loser side by side: one forward for both
        latents = torch.cat([winners, losers])
        noise2, t2 = torch.cat([noise, noise]), torch.cat([timesteps, timesteps])
        images, texts = torch.cat([image_latents] * 2), torch.cat([prompt_embeds] * 2)
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


VALIDATION_STEP = -1  # the draws of held-out pairs: the same at every evaluation


@torch.no_grad()
def evaluate(
    *,
    transformer,
    scheduler,
    cache: PairCache,
    indices: list[int],
    config: TrainConfig,
    rotary,
    autocast_dtype: torch.dtype | None,
    batch_size: int,
) -> dict[str, float]:
    """Held-out pairs under fixed draws (no dropout): implicit accuracy and reward margin of the
    policy against the reference (GAPO/DPO), or the winners' v-prediction MSE (SFT)."""
    plain = TrainConfig(
        **{**asdict(config), "image_dropout": 0.0, "text_dropout": 0.0, "init_lora": ""}
    )
    sums: dict[str, float] = {}
    for start in range(0, len(indices), batch_size):
        chunk = indices[start : start + batch_size]
        batch = cache.batch(torch.tensor(chunk))
        draws = draw_for_slots(
            plain,
            step=VALIDATION_STEP,
            slots=chunk,
            latent_shape=cache.shape("winner_latents")[1:],
            num_timesteps=scheduler.config.num_train_timesteps,
        )
        _, logs = training_step(
            transformer=transformer,
            scheduler=scheduler,
            batch=batch,
            draws=draws,
            config=plain,
            rotary=rotary,
            autocast_dtype=autocast_dtype,
        )
        for key, value in logs.items():
            sums[key] = sums.get(key, 0.0) + value * len(chunk)
    return {f"val_{k}": v / len(indices) for k, v in sums.items()}


def validation_score(metrics: dict[str, float]) -> list[float]:
    """Higher is better, compared in order: implicit accuracy then reward margin (GAPO/DPO), or
    minus the winners' v-prediction loss (SFT)."""
    if "val_implicit_accuracy" in metrics:
        return [metrics["val_implicit_accuracy"], metrics["val_reward_margin"]]
    return [-metrics["val_loss"]]


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
    directory: Path,
    *,
    transformer,
    optimizer,
    lr_schedule,
    step: int,
    config: TrainConfig,
    metrics: list[dict],
) -> Path:
    """LoRA weights + optimizer and schedule state + step: all a resume needs (pair order and
    draws are functions of the step)."""
    tmp = directory.with_name(directory.name + ".tmp")
    save_lora(transformer, tmp, config)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "trainer_state.json").write_text(
        json.dumps(
            {
                "step": step,
                "config": asdict(config),
                "metrics": metrics,
                "lr_schedule": lr_schedule.state_dict(),
            }
        )
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


def record_best(output_dir: Path, checkpoint: Path, score: list[float], metrics: dict) -> bool:
    """Remember ``checkpoint`` as the best if its validation ``score`` (higher is better) beats the
    recorded one; True if it does."""
    best_file = output_dir / BEST_CHECKPOINT
    if best_file.exists():
        best = json.loads(best_file.read_text())
        if (output_dir / best["checkpoint"]).exists() and best["score"] >= score:
            return False
    best_file.write_text(
        json.dumps({"checkpoint": checkpoint.name, "score": score, "validation": metrics})
    )
    return True


class PairCache:
    """The encoded pairs, kept in host memory and moved to the device one batch at a time (the
    2,000-pair cache of the 5B preset is ~13 GB in bf16: it must not sit on the GPU). On CUDA each
    batch is pinned after it is gathered, so its copy is truly asynchronous; pinning the whole
    cache would double host memory and ``index_select`` of a pinned tensor is not pinned anyway."""

    def __init__(self, tensors: dict[str, torch.Tensor], device: torch.device):
        self.device = device
        self.pin = device.type == "cuda" and torch.cuda.is_available()
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors["winner_latents"])

    def shape(self, name: str) -> torch.Size:
        return self.tensors[name].shape

    def batch(self, indices: torch.Tensor) -> dict[str, torch.Tensor]:
        indices = indices.cpu()
        out = {}
        for name, value in self.tensors.items():
            if name != "empty_prompt_embeds":
                value = value.index_select(0, indices)
            if self.pin:
                value = value.pin_memory()
            out[name] = value.to(self.device, non_blocking=self.pin)
        return out


def latest_checkpoint(output_dir: Path) -> Path | None:
    found = sorted(output_dir.glob("checkpoint-*[0-9]"), key=lambda p: int(p.name.split("-")[1]))
    return found[-1] if found else None


def load_checkpoint(directory: Path, *, transformer, optimizer, lr_schedule) -> tuple[int, list]:
    load_lora_weights_into(transformer, directory)
    optimizer.load_state_dict(torch.load(directory / "optimizer.pt", weights_only=True))
    trainer_state = json.loads((directory / "trainer_state.json").read_text())
    if "lr_schedule" in trainer_state:
        lr_schedule.load_state_dict(trainer_state["lr_schedule"])
    return trainer_state["step"], trainer_state["metrics"]


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------


def pair_order(num_pairs: int, *, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(
        num_pairs, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)
    )


def split_validation(num_pairs: int, *, share: float, seed: int) -> tuple[list[int], list[int]]:
    """Training and held-out pair indices: ``floor(share * num_pairs)`` pairs, drawn by seed."""
    held = int(share * num_pairs)
    order = torch.randperm(num_pairs, generator=torch.Generator().manual_seed(seed + 7)).tolist()
    return sorted(order[held:]), sorted(order[:held])


def learning_rate_schedule(optimizer, config: TrainConfig):
    """Warmup then the named schedule over ``max_steps`` optimizer steps (diffusers'
    ``get_scheduler``, as its CogVideoX LoRA script uses). Stepped once per optimizer step, not
    through ``accelerator.prepare`` (which steps it once per process): the schedule is the same
    whatever the number of processes."""
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps,
        num_training_steps=config.max_steps,
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

    Under ``accelerate launch`` with N processes: the main process encodes the pair cache while
    the others wait (a barrier), then each process takes its 1/N of every global batch of
    ``batch_pairs`` pairs; gradients are averaged, so the update equals one process's on the whole
    batch. Only the main process evaluates held-out pairs and writes checkpoints and the LoRA.
    """
    from datetime import timedelta

    from accelerate import Accelerator, InitProcessGroupKwargs

    if not pairs:
        raise ValueError("no preference pairs to train on")
    if not config.output_dir:
        raise ValueError("output_dir is required")
    output_dir = Path(config.output_dir)
    use_cuda = pick_device(config.device) == "cuda"
    bf16 = use_cuda and config.mixed_precision != "no"
    accelerator = Accelerator(
        cpu=not use_cuda,
        mixed_precision="bf16" if bf16 else "no",
        # The other processes wait at the barrier while the main one encodes every pair video
        # (an hour or more for 2,000 5B pairs): longer than the default collective timeout.
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(hours=6))],
    )
    processes, rank = accelerator.num_processes, accelerator.process_index
    per_step = config.batch_pairs // config.gradient_accumulation_steps
    if per_step % processes:
        raise ValueError(
            f"batch_pairs ({config.batch_pairs}) must split evenly over {processes} processes x "
            f"{config.gradient_accumulation_steps} accumulation steps"
        )
    micro = per_step // processes  # pairs per forward on each process
    report = (
        on_progress if (on_progress and accelerator.is_main_process) else (lambda *a, **k: None)
    )
    weight_dtype = torch.bfloat16 if bf16 else torch.float32
    autocast_dtype = torch.bfloat16 if bf16 else None

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
    with accelerator.main_process_first():  # the main process encodes; the others read its file
        tensors = encode_pairs(
            pairs,
            components,
            cache_path=output_dir / "latent-cache.safetensors",
            image_noise_mean=config.image_noise_mean,
            seed=config.seed,
            model_path=config.model_path,
        )
    cache = PairCache(tensors, accelerator.device)  # host memory; batches stream to the device
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
    lr_schedule = learning_rate_schedule(optimizer, config)
    latent_shape = cache.shape("winner_latents")[1:]
    rotary = rotary_embedding(components, latent_shape[0], accelerator.device)
    model, optimizer = accelerator.prepare(transformer, optimizer)

    # Resume
    step, metrics = 0, []
    resume = (
        latest_checkpoint(output_dir)
        if config.resume_from == "latest"
        else (Path(config.resume_from) if config.resume_from else None)
    )
    if resume is not None:
        step, metrics = load_checkpoint(
            resume, transformer=transformer, optimizer=optimizer, lr_schedule=lr_schedule
        )
        report(step, config.max_steps, None, f"resumed from {resume} at step {step}")
    elif config.init_lora:
        # Iterating the loop: start from the last round's policy instead of a zero LoRA.
        load_lora_weights_into(transformer, Path(config.init_lora))
        report(0, config.max_steps, None, f"starting from the policy LoRA in {config.init_lora}")

    train_indices, validation_indices = split_validation(
        len(pairs), share=config.validation_share, seed=config.seed
    )
    if not train_indices:
        raise ValueError("validation_share leaves no pairs to train on")
    if config.validation_share and not validation_indices:
        report(step, config.max_steps, None, "too few pairs to hold some out: no best checkpoint")
    train_indices = torch.tensor(train_indices)
    num_pairs = len(train_indices)
    steps_per_epoch = max(1, num_pairs // config.batch_pairs)
    last_checkpoint = str(resume or "")
    first_step, started = step, time.monotonic()

    def checkpoint(step: int) -> str:
        path = save_checkpoint(
            output_dir / f"checkpoint-{step}",
            transformer=transformer,
            optimizer=optimizer,
            lr_schedule=lr_schedule,
            step=step,
            config=config,
            metrics=metrics,
        )
        if validation_indices:
            transformer.eval()
            validation = evaluate(
                transformer=transformer,
                scheduler=components.scheduler,
                cache=cache,
                indices=validation_indices,
                config=config,
                rotary=rotary,
                autocast_dtype=autocast_dtype,
                batch_size=max(1, micro),
            )
            transformer.train()
            record_best(output_dir, path, validation_score(validation), validation)
            report(step, config.max_steps, None, f"held-out pairs: {json.dumps(validation)}")
        prune_checkpoints(
            output_dir,
            keep_last=config.keep_last_checkpoints,
            keep_best=config.keep_best_checkpoint,
        )
        if on_checkpoint:
            on_checkpoint(str(path))
        return str(path)

    while step < config.max_steps:
        # Pair order and draws are functions of (seed, step, position in the global batch): a
        # resume, with any number of processes, sees the same pairs and draws.
        epoch, within = divmod(step, steps_per_epoch)
        order = train_indices[pair_order(num_pairs, seed=config.seed, epoch=epoch)]
        positions = (within * config.batch_pairs + torch.arange(config.batch_pairs)) % num_pairs
        sums: dict[str, float] = {}
        for k in range(config.gradient_accumulation_steps):
            # Micro-batch k: positions [k * per_step, (k + 1) * per_step), this process's slice.
            first = k * per_step + rank * micro
            slots = list(range(first, first + micro))
            batch = cache.batch(order[positions[slots]])
            draws = draw_for_slots(
                config,
                step=step,
                slots=slots,
                latent_shape=latent_shape,
                num_timesteps=components.scheduler.config.num_train_timesteps,
            )
            last = k == config.gradient_accumulation_steps - 1
            with accelerator.no_sync(model) if not last else contextlib.nullcontext():
                loss, logs = training_step(
                    transformer=model,
                    scheduler=components.scheduler,
                    batch=batch,
                    draws=draws,
                    config=config,
                    rotary=rotary,
                    autocast_dtype=autocast_dtype,
                )
                accelerator.backward(loss / config.gradient_accumulation_steps)
            for key, value in logs.items():
                sums[key] = sums.get(key, 0.0) + value / config.gradient_accumulation_steps
        grad_norm = accelerator.clip_grad_norm_(lora_params, config.max_grad_norm)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1

        # The figures of the whole global batch: each process's mean, averaged over processes.
        keys = sorted(sums)
        means = accelerator.reduce(
            torch.tensor([sums[k] for k in keys], device=accelerator.device), reduction="mean"
        )
        logs = dict(zip(keys, means.tolist(), strict=True))
        logs["grad_norm"] = float(grad_norm)
        logs["learning_rate"] = lr_schedule.get_last_lr()[0]
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
    accelerator.wait_for_everyone()
    for name in offloaded:  # the caller may sample with these components next
        getattr(components, name).to(accelerator.device)
    report(step, config.max_steps, None, f"done on {processes} process(es): LoRA in {lora_dir}")
    return TrainResult(
        lora_dir=str(lora_dir),
        steps=step,
        metrics=metrics,
        checkpoint_dir=last_checkpoint,
        processes=processes,
    )


def main(argv: list[str] | None = None) -> None:
    """CLI (also under ``accelerate launch``): every TrainConfig field is a --flag."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--pairs", required=True, help="Pairs JSONL (training.pairs.write_pairs_jsonl)"
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
    summary = {"lora_dir": result.lora_dir, "steps": result.steps, "processes": result.processes}
    print(json.dumps({**summary, "rank": int(os.environ.get("RANK", 0))}), flush=True)


if __name__ == "__main__":
    main()
