"""Where the released AnimeReward (bilibili/Index-anisora, ``reward/``) keeps each file, torch-free.

``LABELHUB_ANISORA_REWARD_DIR`` is the release's ``reward/`` folder as its READMEs lay it out:
``weights/`` from HF ``IndexTeam/Index-anisora`` (``reward/weights``) and
``character/IP_checkpoints/`` (``reward/IP_checkpoints``). The web side checks a launch with
``check_release_dir`` before any model code is imported, so a missing file is named at launch.
"""

from __future__ import annotations

import json
from pathlib import Path

# the two Mantis-8B-Idefics2 sequence-classification regressors (HF folders)
QUALITY_DIR = (
    "weights/mantis-8b-idefics2-video-eval-24frame-quality_4096_regression/checkpoint-final"
)
SMOOTH_DIR = "weights/mantis-8b-idefics2-video-eval-24frame-benchmark-1epoch_4096_regression/checkpoint-final"
# BLIP ViT-B consistency models (torch pickles: {"model": state_dict, ...})
IMAGE_CONSISTENCY_CKPT = "weights/Pretrain_humangt_meanvideo_trainset_wGT/checkpoint_06.pth"
TEXT_CONSISTENCY_CKPT = (
    "weights/Pretrain_text_humangt_meanvideo_trainset_wGT_random_samescore/checkpoint_05.pth"
)
BERT_DIR = "weights/bert-base-uncased"  # the text model's tokenizer (init_tokenizer reads it)
# ActionCLIP ViT-B/16, 8 frames (an mmengine checkpoint: {"state_dict": ..., ...})
MOTION_CKPT = "weights/testvl-pre76-top187-rec69.pth"
# OpenAI CLIP's BPE merges: the release reads it from the `clip` package it installs
CLIP_BPE = "weights/bpe_simple_vocab_16e6.txt.gz"
# character: the BLIP ViT-L recogniser and GroundingDINO-base (HF folder, the release's spelling)
CHARACTER_CKPT = "character/IP_checkpoints/blip_checkpoints/animate_recoginzer.pth"
GROUNDING_DINO_DIR = "character/IP_checkpoints/grouding-dino-base"

# which released files each dimension reads (README's table comes from this)
DIMENSION_FILES = {
    "visual_smoothness": (SMOOTH_DIR,),
    "visual_motion": (MOTION_CKPT, CLIP_BPE),
    "visual_appeal": (QUALITY_DIR,),
    "text_consistency": (TEXT_CONSISTENCY_CKPT, BERT_DIR),
    "image_consistency": (IMAGE_CONSISTENCY_CKPT,),
    "character_consistency": (CHARACTER_CKPT, GROUNDING_DINO_DIR),
}

# the dimensions with a released head that train_reward trains (motion and character have none)
HEAD_DIMENSIONS = ("visual_smoothness", "visual_appeal", "image_consistency", "text_consistency")

HF_FOLDER_FILES = ("config.json", "preprocessor_config.json", "tokenizer_config.json")
# SAM 2.1 for character tracking (LABELHUB_REWARD_SOURCE_SAM): the release's SAMURAI reads Meta's
# sam2.1_hiera_base_plus.pt; that pickle is not read, the transformers folder of the same weights
# (facebook/sam2.1-hiera-base-plus) is
SAM2_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")


class ReleaseLayoutError(ValueError):
    """The release folder lacks a file the preset reads (the message names it)."""


def converted_path(checkpoint: Path) -> Path:
    """Where a ``.pth`` pickle's tensors are kept as safetensors after the first load."""
    return checkpoint.with_suffix(".safetensors")


def _weight_files(folder: Path) -> list[Path]:
    """The safetensors files a Hugging Face folder's weights are in (the index's shards)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / name for name in shards]
    return [folder / "model.safetensors"]


def missing_files(root: str | Path, dimensions=None) -> list[str]:
    """Files (relative to ``root``) that the preset needs and the folder lacks."""
    root = Path(root)
    missing: list[str] = []
    wanted = dimensions or tuple(DIMENSION_FILES)
    for key in wanted:
        for rel in DIMENSION_FILES[key]:
            path = root / rel
            if rel.endswith(".pth"):
                if not path.is_file() and not converted_path(path).is_file():
                    missing.append(rel)
            elif rel == BERT_DIR:
                if not (path / "vocab.txt").is_file():
                    missing.append(f"{rel}/vocab.txt")
            elif rel.endswith(".gz"):
                if not path.is_file():
                    missing.append(rel)
            else:
                files = [path / name for name in HF_FOLDER_FILES]
                if (path / "config.json").is_file():
                    files += _weight_files(path)
                missing += [str(f.relative_to(root)) for f in files if not f.is_file()]
    return list(dict.fromkeys(missing))


def check_release_dir(root: str | Path | None, *, sam_source: str | None = None) -> Path:
    """The release folder, or a ``ReleaseLayoutError`` naming the setting, the folder and the first
    missing files. ``sam_source``: the SAM 2.1 folder character tracking uses (the release's
    SAMURAI checkpoint, Meta's .pt, is not read; see README)."""
    if not root:
        raise ReleaseLayoutError(
            "LABELHUB_ANISORA_REWARD_DIR is not set: the anisora preset reads the released "
            "AnimeReward weights from that folder (the release's reward/ folder)"
        )
    root = Path(root)
    if not root.is_dir():
        raise ReleaseLayoutError(f"LABELHUB_ANISORA_REWARD_DIR={root}: no such folder")
    missing = missing_files(root)
    if missing:
        raise ReleaseLayoutError(
            f"LABELHUB_ANISORA_REWARD_DIR={root} lacks {len(missing)} released file(s): "
            + ", ".join(missing[:6])
            + (" ..." if len(missing) > 6 else "")
        )
    if sam_source is not None:
        check_sam2_dir(sam_source)
    return root


def check_sam2_dir(source: str | Path | None) -> Path:
    """The SAM 2.1 folder, or a ``ReleaseLayoutError`` naming the setting and the missing files."""
    setting = "LABELHUB_REWARD_SOURCE_SAM"
    where = "a folder laid out as facebook/sam2.1-hiera-base-plus ships it for transformers"
    if not source:
        raise ReleaseLayoutError(
            f"{setting} is not set: the anisora preset tracks characters with SAM 2.1, {where}"
        )
    missing = [name for name in SAM2_FILES if not (Path(source) / name).is_file()]
    if missing:
        raise ReleaseLayoutError(
            f"{setting}={source}: the anisora preset tracks characters with SAM 2.1, {where} "
            f"(the release's sam2.1_hiera_base_plus.pt is not read); {', '.join(missing)} missing"
        )
    return Path(source)
