"""AnimeReward's names and settings, free of torch: encoder names and sources, the presets'
image sizes, and the training config. The web side validates launches with these without
loading any model code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

from labelhub.dimensions import DIMENSION_KEYS

ENCODER_NAMES = ("clip", "idefics2", "xclip", "grounding_dino", "sam", "blip")
RANDOM_ENCODER_SEED = 20250

FULL_SOURCES = {
    "clip": "openai/clip-vit-large-patch14",
    # the seed's smoothness encoder: the vision tower (SigLIP-so400m, Idefics2VisionTransformer) of
    # Mantis-8B-Idefics2; any Idefics2 checkpoint or a saved Idefics2VisionTransformer works too
    "idefics2": "TIGER-Lab/Mantis-8B-Idefics2",
    "xclip": "microsoft/xclip-base-patch32",
    "grounding_dino": "IDEA-Research/grounding-dino-tiny",
    "sam": "facebook/sam-vit-base",
    "blip": "Salesforce/blip-itm-base-coco",
}

# The files each full encoder's folder must hold, as its hub repository ships them (weights as
# safetensors: a pickled .bin is never loaded). Idefics2: the whole Mantis-8B-Idefics2 / idefics2
# folder (only the vision tower's tensors are read) or a saved Idefics2VisionTransformer.
FULL_SOURCE_FILES = {
    "clip": ("config.json", "vocab.json", "merges.txt"),
    "idefics2": ("config.json",),
    "xclip": ("config.json", "vocab.json", "merges.txt"),
    "grounding_dino": ("config.json", "vocab.txt"),
    "sam": ("config.json",),
    "blip": ("config.json",),
}


def missing_source_files(sources: dict[str, str]) -> list[str]:
    """Problems with the full preset's encoder folders (``FULL_SOURCES`` overridden by
    ``sources``), each naming the encoder, its source and the file: empty when all are there.
    A hub id is not a folder: weights are never fetched at run time."""
    import json
    from pathlib import Path

    problems = []
    for name in ENCODER_NAMES:
        source = (sources or {}).get(name) or FULL_SOURCES[name]
        folder = Path(source)
        setting = f"LABELHUB_REWARD_SOURCE_{name.upper()}"
        if not folder.is_dir():
            problems.append(
                f"{setting}={source}: not a local folder (download the hub repository once, "
                "e.g. huggingface-cli download <id> --local-dir <folder>, and point this at it)"
            )
            continue
        for file in FULL_SOURCE_FILES[name]:
            if not (folder / file).is_file():
                problems.append(f"{setting}={source}: {file} missing")
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            problems += [
                f"{setting}={source}: {s} missing" for s in shards if not (folder / s).is_file()
            ]
        elif not (folder / "model.safetensors").is_file():
            problems.append(
                f"{setting}={source}: model.safetensors missing"
                + (
                    " (pytorch_model.bin is a pickle; convert it to safetensors)"
                    if (folder / "pytorch_model.bin").is_file()
                    else ""
                )
            )
    return problems


OPENAI_MEAN, OPENAI_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIGLIP_MEAN, SIGLIP_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
FINETUNABLE = DIMENSION_KEYS  # every dimension can fine-tune (character: BLIP only, contrastively)


@dataclass(frozen=True)
class ImageSpec:
    """How one encoder wants its pixels: square side, normalisation."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class RewardPreset:
    name: str
    frame_size: int  # frames, condition and reference images are decoded at this square size
    images: dict[str, ImageSpec]
    max_characters: int = 2  # GroundingDINO boxes kept per condition image
    box_threshold: float = 0.35
    head_hidden: int = 256
    # smallest crop side (fraction of the frame) a detection or tracked mask gives; tiny's random
    # detector boxes are arbitrary, so its crops are kept large enough to show the character
    min_box_side: float = 1 / 8
    # a tracked mask of which less than this share survives a small morphological opening
    # (speckle or thin strands, not a region) is no segmentation: its crop keeps the whole box
    # unmasked and the previous box carries on (random tiny SAM gives such mazes)
    min_mask_solidity: float = 0.5
    keyframes: int = 8  # frames the appeal model keeps (largest frame-to-frame change)
    # frames the character model detects-and-tracks through, spread over the clip (0: all sampled)
    track_frames: int = 8
    # dimensions whose encoders are fine-tuned by default (RewardTrainConfig.finetune_encoders=None)
    finetune: tuple[str, ...] = ()


PRESETS: dict[str, RewardPreset] = {
    "tiny": RewardPreset(
        name="tiny",
        frame_size=64,
        images={
            "clip": ImageSpec(32, OPENAI_MEAN, OPENAI_STD),
            "idefics2": ImageSpec(32, SIGLIP_MEAN, SIGLIP_STD),
            "xclip": ImageSpec(32, IMAGENET_MEAN, IMAGENET_STD),
            "grounding_dino": ImageSpec(64, IMAGENET_MEAN, IMAGENET_STD),
            "sam": ImageSpec(64, IMAGENET_MEAN, IMAGENET_STD),
            "blip": ImageSpec(32, OPENAI_MEAN, OPENAI_STD),
        },
        head_hidden=64,
        keyframes=4,
        min_box_side=0.5,
    ),
    # Each encoder at its native input size: frames are decoded at 1024 (SAM's input side), so
    # SAM is not fed an upscaled 384 and GroundingDINO gets its ~800 px short side.
    "full": RewardPreset(
        name="full",
        frame_size=1024,
        images={
            "clip": ImageSpec(224, OPENAI_MEAN, OPENAI_STD),
            "idefics2": ImageSpec(378, SIGLIP_MEAN, SIGLIP_STD),  # Idefics2 shortest_edge
            "xclip": ImageSpec(224, IMAGENET_MEAN, IMAGENET_STD),
            "grounding_dino": ImageSpec(800, IMAGENET_MEAN, IMAGENET_STD),
            "sam": ImageSpec(1024, IMAGENET_MEAN, IMAGENET_STD),
            "blip": ImageSpec(384, OPENAI_MEAN, OPENAI_STD),
        },
        finetune=("visual_smoothness", "text_consistency", "image_consistency"),
    ),
    # Bilibili's released AnimeReward (scoring/anime_reward/anisora): the six released models from
    # LABELHUB_ANISORA_REWARD_DIR, clips decoded at their source resolution (frame_size 0) with
    # the release's frame rule; each model resizes as the release does (224 px bicubic).
    "anisora": RewardPreset(
        name="anisora",
        frame_size=0,
        images={
            "blip": ImageSpec(224, OPENAI_MEAN, OPENAI_STD),
            "clip": ImageSpec(224, OPENAI_MEAN, OPENAI_STD),
        },
        max_characters=5,
        box_threshold=0.5,
    ),
}

# what train_reward changes of the released models (help: RewardTrainConfig.release_finetune)
ANISORA_FINETUNE = ("none", "heads", "full", "lora")


def get_preset(name: str) -> RewardPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown AnimeReward preset {name!r}; expected one of {', '.join(PRESETS)}"
        ) from None


OVERRIDABLE = ("epochs", "learning_rate", "encoder_learning_rate", "contrastive_weight")
# What a reward model learns from: the 1-5 label means, the A/B/tie judgements, or both.
OBJECTIVES = ("regression", "pairs", "joint")
TIE_MODELS = ("rao_kupper", "davidson")  # scoring.anime_reward.comparisons


@dataclass
class RewardTrainConfig:
    preset: str = field(
        default="tiny",
        metadata={
            "help": "Encoder preset: tiny (random, CPU), full (pretrained encoders from local "
            "folders) or anisora (Bilibili's released AnimeReward, LABELHUB_ANISORA_REWARD_DIR)."
        },
    )
    dimensions: tuple[str, ...] = field(
        default=DIMENSION_KEYS, metadata={"help": "Dimensions to train."}
    )
    epochs: int = field(
        default=40, metadata={"help": "Passes over the training clips per dimension."}
    )
    batch_size: int = field(
        default=16, metadata={"help": "Clips (or judgements, for pairs) per optimiser step."}
    )
    objective: str = field(
        default="regression",
        metadata={
            "help": "What the heads learn from: regression (MSE to the 1-5 label means on [0, 1]), "
            "pairs (Bradley-Terry with ties on the snapshot's per-dimension A/B/tie judgements) "
            "or joint (both: MSE + pair_weight x the pairs loss)."
        },
    )
    tie_model: str = field(
        default="rao_kupper",
        metadata={
            "help": "How pairs model a tie: rao_kupper (a learnt threshold eta) or davidson "
            "(a learnt tie strength nu); the tie parameter is learnt per dimension."
        },
    )
    pair_weight: float = field(
        default=1.0,
        metadata={"help": "joint: weight of the pairs loss beside the regression loss."},
    )
    encode_batch_size: int = field(
        default=8, metadata={"help": "Clips per encoder pass (feature caching)."}
    )
    learning_rate: float = field(
        default=1e-3, metadata={"help": "AdamW learning rate of the heads."}
    )
    weight_decay: float = field(default=1e-2, metadata={"help": "AdamW weight decay."})
    head_hidden: int | None = field(
        default=None, metadata={"help": "Head width; None = the preset's."}
    )
    dropout: float = field(default=0.1, metadata={"help": "Dropout inside the heads."})
    finetune_encoders: bool | tuple[str, ...] | None = field(
        default=None,
        metadata={
            "help": "Dimensions that train their own copy of their encoders: None = the preset's "
            "(full: smoothness, text and image consistency; tiny: none), True = all six, False = "
            "none, or a list of dimension keys. Character fine-tunes BLIP only (contrastive on "
            "mask crop / gallery character pairs); detection and tracking stay frozen."
        },
    )
    encoder_learning_rate: float = field(
        default=1e-5, metadata={"help": "AdamW learning rate of fine-tuned encoders."}
    )
    encoder_frozen_layers: int = field(
        default=0,
        metadata={
            "help": "When fine-tuning: keep the patch embeddings and the first N transformer "
            "layers of each fine-tuned encoder frozen (-1: freeze all but the last layer)."
        },
    )
    contrastive_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the contrastive losses when fine-tuning (character: BLIP crop vs "
            "gallery character; text: video vs the batch's prompts, weighted by the match label)."
        },
    )
    contrastive_jitter: float = field(
        default=0.4,
        metadata={
            "help": "Colour jitter of the character contrastive loss's crops and gallery images: "
            "brightness x [1 - s, 1 + s] and tint +- s/4 per image (identity must not hang on "
            "lighting); 0 = none."
        },
    )
    dimension_overrides: dict = field(
        default_factory=dict,
        metadata={
            "help": "Per-dimension settings: dimension key -> {setting: value} for epochs, "
            "learning_rate, encoder_learning_rate and contrastive_weight, e.g. "
            '{"text_consistency": {"encoder_learning_rate": 1e-3}}.'
        },
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Recompute encoder activations when fine-tuning; default: on for CUDA."},
    )
    keyframes: int | None = field(
        default=None, metadata={"help": "Keyframes the appeal model scores; None = the preset's."}
    )
    track_frames: int | None = field(
        default=None,
        metadata={
            "help": "Frames the character model tracks, spread over the clip; 0 = every sampled "
            "frame, None = the preset's."
        },
    )
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda."})
    mixed_precision: str = field(
        default="auto", metadata={"help": "auto (bf16 on GPU), bf16 or no."}
    )
    decode_workers: int = field(default=4, metadata={"help": "Threads decoding clips with PyAV."})
    seed: int = field(default=0, metadata={"help": "Seed for head init and batch order."})
    encoder_sources: dict = field(
        default_factory=dict,
        metadata={
            "help": "Full preset only: encoder name -> local directory or hub id for from_pretrained."
        },
    )
    release_dir: str = field(
        default="",
        metadata={
            "help": "anisora preset: the released reward/ folder (LABELHUB_ANISORA_REWARD_DIR)."
        },
    )
    release_finetune: str = field(
        default="heads",
        metadata={
            "help": "anisora preset: heads (default: the released heads trained on the snapshot "
            "with the release's objectives: L1 on the sigmoid for the BLIP consistency models, "
            "MSE on the 0-100 output for the Idefics2 regressors; motion and character have no "
            "head and stay as released), full (as heads, and the BLIP consistency models' ViT and "
            "BERT trained too, at encoder_learning_rate), lora (as heads, and LoRA adapters on "
            "the attention projections of the two Idefics2 regressors' language model trained "
            "with their score heads on the regression objective, at encoder_learning_rate) or "
            "none (evaluate the release as it is)."
        },
    )
    release_lora_rank: int = field(
        default=8,
        metadata={
            "help": "anisora preset, release_finetune lora: rank of the LoRA adapters on the "
            "Idefics2 regressors' q/k/v/o projections (alpha = rank)."
        },
    )

    def __post_init__(self):
        self.dimensions = tuple(self.dimensions)
        if isinstance(self.finetune_encoders, list | tuple):
            self.finetune_encoders = tuple(self.finetune_encoders)
            unknown = set(self.finetune_encoders) - set(DIMENSION_KEYS)
            if unknown:
                raise ValueError(
                    f"finetune_encoders: unknown dimensions {sorted(unknown)}; "
                    f"expected keys of {DIMENSION_KEYS}"
                )
        elif self.finetune_encoders is not None and not isinstance(self.finetune_encoders, bool):
            raise ValueError(
                "finetune_encoders must be None, true, false or a list of dimension keys"
            )
        if self.encoder_frozen_layers < -1:
            raise ValueError("encoder_frozen_layers must be >= -1")
        if self.contrastive_weight < 0:
            raise ValueError("contrastive_weight must be >= 0")
        if not 0 <= self.contrastive_jitter < 1:
            raise ValueError("contrastive_jitter must be in [0, 1)")
        self._check_overrides()
        if self.objective not in OBJECTIVES:
            raise ValueError(
                f"objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}"
            )
        if self.tie_model not in TIE_MODELS:
            raise ValueError(
                f"tie_model must be one of {', '.join(TIE_MODELS)}, not {self.tie_model!r}"
            )
        if not (isinstance(self.pair_weight, int | float) and math.isfinite(self.pair_weight)) or (
            self.pair_weight <= 0
        ):
            raise ValueError(f"pair_weight must be a positive number, got {self.pair_weight!r}")
        if self.keyframes is not None and self.keyframes < 1:
            raise ValueError("keyframes must be at least 1")
        if self.track_frames is not None and not (self.track_frames == 0 or self.track_frames >= 2):
            raise ValueError("track_frames must be 0 (every sampled frame) or at least 2")
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, not {self.preset!r}")
        unknown = set(self.dimensions) - set(DIMENSION_KEYS)
        if unknown or not self.dimensions:
            raise ValueError(
                f"dimensions must be a non-empty subset of {DIMENSION_KEYS}; unknown: {sorted(unknown)}"
            )
        for name in ("epochs", "batch_size", "encode_batch_size", "decode_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("learning_rate", "encoder_learning_rate"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ValueError("weight_decay must be >= 0")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1)")
        if self.head_hidden is not None and self.head_hidden < 1:
            raise ValueError("head_hidden must be at least 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if self.mixed_precision not in ("auto", "bf16", "no"):
            raise ValueError(
                f"mixed_precision must be auto, bf16 or no, not {self.mixed_precision!r}"
            )
        if self.release_finetune not in ANISORA_FINETUNE:
            raise ValueError(
                f"release_finetune must be one of {', '.join(ANISORA_FINETUNE)}, "
                f"not {self.release_finetune!r}"
            )
        if (
            isinstance(self.release_lora_rank, bool)
            or not isinstance(self.release_lora_rank, int)
            or self.release_lora_rank < 1
        ):
            raise ValueError(
                f"release_lora_rank must be a whole number >= 1, got {self.release_lora_rank!r}"
            )
        unknown_encoders = set(self.encoder_sources) - set(ENCODER_NAMES)
        if unknown_encoders:
            raise ValueError(f"unknown encoders in encoder_sources: {sorted(unknown_encoders)}")

    def _check_overrides(self) -> None:
        if not isinstance(self.dimension_overrides, dict):
            raise ValueError("dimension_overrides must map dimension keys to {setting: value}")
        for key, settings in self.dimension_overrides.items():
            if key not in DIMENSION_KEYS:
                raise ValueError(
                    f"dimension_overrides: unknown dimension {key!r}; expected one of "
                    f"{', '.join(DIMENSION_KEYS)}"
                )
            if not isinstance(settings, dict):
                raise ValueError(f"dimension_overrides[{key!r}] must be {{setting: value}}")
            for name, value in settings.items():
                if name not in OVERRIDABLE:
                    raise ValueError(
                        f"dimension_overrides[{key!r}]: {name!r} cannot be set per dimension; "
                        f"expected one of {', '.join(OVERRIDABLE)}"
                    )
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or not math.isfinite(value)
                ):
                    raise ValueError(f"dimension_overrides[{key!r}][{name!r}] must be a number")
                if name == "epochs":
                    if value < 1 or not float(value).is_integer():
                        raise ValueError(
                            f"dimension_overrides[{key!r}]['epochs'] must be a whole number >= 1"
                        )
                    settings[name] = int(value)
                    continue
                if value < 0 or (value == 0 and name != "contrastive_weight"):
                    raise ValueError(
                        f"dimension_overrides[{key!r}][{name!r}] must be "
                        + ("> 0" if name != "contrastive_weight" else ">= 0")
                    )

    def for_dimension(self, key: str, name: str) -> float:
        """Setting ``name`` for dimension ``key``: its override, else the run-wide value."""
        return self.dimension_overrides.get(key, {}).get(name, getattr(self, name))

    def finetuned_dimensions(self) -> tuple[str, ...]:
        """The dimensions (of those trained) whose encoders this run fine-tunes."""
        chosen = self.finetune_encoders
        if chosen is None:
            chosen = PRESETS[self.preset].finetune
        elif chosen is True:
            chosen = FINETUNABLE
        elif chosen is False:
            chosen = ()
        return tuple(key for key in self.dimensions if key in chosen)

    def refusal_on_processes(self, processes: int) -> str:
        """Why this run cannot train on ``processes`` processes ("" if it can): what is not
        exact on several processes yet, encoder fine-tuning (live features and in-batch
        contrastive losses) and the anisora preset (its own trainer)."""
        if processes == 1:
            return ""
        if self.preset == "anisora":
            return f"the anisora preset trains on 1 process, not {processes}: train it with gpus=1"
        finetuned = self.finetuned_dimensions()
        if finetuned:
            return (
                f"fine-tuning encoders ({', '.join(finetuned)}) is not supported on {processes} "
                "processes yet: train with gpus=1, or set finetune_encoders to false"
            )
        return ""

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in fields(cls)}
