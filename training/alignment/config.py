"""The alignment trainer's names and settings, free of torch: generator presets and their video
shapes, loss types, and ``TrainConfig``. The web side validates launches with these without
loading the trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

LOSS_TYPES: tuple[str, ...] = ("gapo", "dpo", "sft")
PRESETS: tuple[str, ...] = ("tiny", "cogvideox-5b-i2v")


@dataclass(frozen=True)
class VideoShape:
    """What the preset generates and trains on: frames, height, width, fps, sampling defaults."""

    frames: int
    height: int
    width: int
    fps: int
    inference_steps: int
    guidance_scale: float
    sampler: str = "ddim"


# Generation samplers. "dpm": CogVideoXDPMScheduler (DPM++ 2M on the release's zero-SNR
# schedule) with dynamic CFG, as the released AniSora RL inference samples
# (anisora_rl/sat/configs/cogvideox_5b_i2v_infer.yaml: VPSDEDPMPP2MSampler + DynamicCFG scale 6)
# and as diffusers' CogVideoX I2V example calls it (use_dynamic_cfg=True). "ddim": the
# checkpoint's own CogVideoXDDIMScheduler with constant guidance.
SAMPLERS: dict[str, str] = {
    "dpm": "CogVideoXDPMScheduler with dynamic CFG (the release's sampler)",
    "ddim": "CogVideoXDDIMScheduler with constant guidance",
}

SHAPES: dict[str, VideoShape] = {
    "tiny": VideoShape(frames=9, height=32, width=32, fps=8, inference_steps=8, guidance_scale=1.0),
    # 49 frames at 480x720, 50 sampling steps, guidance 6 with dynamic CFG (DPM++). CogVideoX-5B-I2V
    # was trained on 8 fps video (its pipeline's export default): 49 frames are 6 s at 8 fps.
    "cogvideox-5b-i2v": VideoShape(
        frames=49,
        height=480,
        width=720,
        fps=8,
        inference_steps=50,
        guidance_scale=6.0,
        sampler="dpm",
    ),
}
LR_SCHEDULERS = ("constant_with_warmup", "linear", "cosine")

LORA_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------


def _field(default, help: str, **kw):
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TrainConfig:
    """Everything a GAPO/DPO/SFT run needs; defaults follow the paper and the released code."""

    output_dir: str = _field("", "Directory for checkpoints, the latent cache and the final LoRA")
    loss_type: str = _field(
        "gapo", "gapo (gap-weighted Diffusion-DPO), dpo (unit gaps) or sft (winners only)"
    )
    beta: float = _field(5000.0, "Diffusion-DPO temperature beta (released code: 5000)")
    alpha: float = _field(
        2.0,
        "Reward gain base: gain(r) = alpha ** r, gap = gain(r_w) - gain(r_l) (released code: 2)",
    )
    preset: str = _field("tiny", "Generator preset: tiny or cogvideox-5b-i2v")
    model_path: str = _field(
        "", "Local directory or hub id of CogVideoX-5B-I2V (cogvideox-5b-i2v preset)"
    )
    lora_rank: int = _field(128, "LoRA rank on the transformer's attention projections")
    lora_alpha: int = _field(0, "LoRA alpha; 0 means equal to the rank (scale 1)")
    learning_rate: float = _field(1e-4, "AdamW learning rate of the LoRA weights")
    weight_decay: float = _field(1e-4, "AdamW weight decay")
    max_steps: int = _field(1000, "Optimizer steps to train")
    batch_pairs: int = _field(
        1,
        "Pairs per optimizer step in all (the global batch): split over processes and "
        "accumulation steps, so it does not change with the number of GPUs",
    )
    gradient_accumulation_steps: int = _field(
        1, "Micro-batches per optimizer step on each process (diffusers' LoRA script's option)"
    )
    lr_scheduler: str = _field(
        "constant_with_warmup",
        "Learning-rate schedule after warmup: constant_with_warmup, linear or cosine (decay to 0 "
        "at max_steps), as diffusers' get_scheduler names them",
    )
    lr_warmup_steps: int = _field(
        0, "Optimizer steps of linear warmup from 0 to learning_rate (diffusers' script: 100s)"
    )
    validation_share: float = _field(
        0.1,
        "Share of pairs held out to pick the best checkpoint (implicit accuracy on them); "
        "none when that rounds to 0 pairs",
    )
    text_dropout: float = _field(
        0.1,
        "Probability of training a pair without its prompt (the released config's ucg_rate 0.1), "
        "so the unconditional branch of guided sampling learns too",
    )
    max_grad_norm: float = _field(1.0, "Gradient clipping norm")
    seed: int = _field(
        0, "Seed of pair order, timesteps and noise (a resumed run draws the same ones)"
    )
    checkpoint_every: int = _field(
        100, "Write a resumable checkpoint every N steps (0: only at the end)"
    )
    log_every: int = _field(1, "Report metrics every N steps")
    keep_last_checkpoints: int = _field(
        2, "Checkpoints kept on disk: the newest N (0: keep all), plus the best if keep_best"
    )
    keep_best_checkpoint: bool = _field(
        True,
        "Also keep the checkpoint with the best implicit accuracy (SFT: lowest loss) on the "
        "held-out pairs",
    )
    offload_encoders: bool = _field(
        True, "Move T5 and the VAE off the GPU once the pairs are encoded (back at the end)"
    )
    image_dropout: float = _field(
        0.05, "Probability of dropping the first-frame latent (diffusers LoRA script)"
    )
    image_noise_mean: float = _field(
        -3.0, "Log-mean of the noise sigma added to the first frame before encoding"
    )
    gradient_checkpointing: bool | None = _field(
        None, "Recompute activations in backward; default: on for CUDA"
    )
    mixed_precision: str = _field("auto", "auto (bf16 on CUDA, fp32 on CPU), bf16 or no")
    device: str = _field("auto", "auto, cpu or cuda (accelerate picks the GPU per process)")
    resume_from: str = _field(
        "", "Checkpoint directory to resume from ('latest' = newest in output_dir)"
    )
    init_lora: str = _field(
        "",
        "LoRA directory of a policy checkpoint to start from (the next round of the loop); "
        "the reference stays the base model (adapters off)",
    )

    def __post_init__(self):
        errors = []
        if self.loss_type not in LOSS_TYPES:
            errors.append(
                f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {self.loss_type!r}"
            )
        if self.preset not in PRESETS:
            errors.append(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        if self.preset == "cogvideox-5b-i2v" and not self.model_path:
            errors.append("the cogvideox-5b-i2v preset needs model_path (LABELHUB_COGVIDEOX_PATH)")
        if not self.beta > 0:
            errors.append(f"beta must be > 0, got {self.beta}")
        if not self.alpha > 1:
            errors.append(
                f"alpha must be > 1 (a higher reward must have a higher gain), got {self.alpha}"
            )
        for name in (
            "lora_rank",
            "max_steps",
            "batch_pairs",
            "log_every",
            "gradient_accumulation_steps",
        ):
            if getattr(self, name) < 1:
                errors.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lora_alpha < 0 or self.checkpoint_every < 0 or self.keep_last_checkpoints < 0:
            errors.append("lora_alpha, checkpoint_every and keep_last_checkpoints must be >= 0")
        if not 0 < self.learning_rate < 1:
            errors.append(f"learning_rate must be in (0, 1), got {self.learning_rate}")
        if not 0 <= self.image_dropout < 1:
            errors.append(f"image_dropout must be in [0, 1), got {self.image_dropout}")
        if not 0 <= self.text_dropout < 1:
            errors.append(f"text_dropout must be in [0, 1), got {self.text_dropout}")
        if not 0 <= self.validation_share < 0.5:
            errors.append(f"validation_share must be in [0, 0.5), got {self.validation_share}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            errors.append(
                f"lr_scheduler must be one of {', '.join(LR_SCHEDULERS)}, got {self.lr_scheduler!r}"
            )
        if not 0 <= self.lr_warmup_steps <= self.max_steps:
            errors.append(f"lr_warmup_steps must be in 0..max_steps, got {self.lr_warmup_steps}")
        if self.batch_pairs % self.gradient_accumulation_steps:
            errors.append(
                f"batch_pairs ({self.batch_pairs}) must be a multiple of "
                f"gradient_accumulation_steps ({self.gradient_accumulation_steps})"
            )
        if self.mixed_precision not in ("auto", "bf16", "no"):
            errors.append(f"mixed_precision must be auto, bf16 or no, got {self.mixed_precision!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            errors.append(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.init_lora and not (Path(self.init_lora) / LORA_WEIGHT_NAME).exists():
            errors.append(f"init_lora has no {LORA_WEIGHT_NAME}: {self.init_lora}")
        if errors:
            raise ValueError("invalid training config: " + "; ".join(errors))

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from plain values (a TrainingRun's params); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training parameters: {', '.join(unknown)}")
        return cls(**values)

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in fields(cls)}
