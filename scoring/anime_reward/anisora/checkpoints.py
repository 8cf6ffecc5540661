"""The released checkpoints' tensors, mapped onto transformers modules by name.

``.pth`` files are torch pickles: they are read with ``torch.load(weights_only=True)`` (tensors and
plain containers only; no code is unpickled) and their state dict is written once as safetensors
beside them, which later loads read instead. Every mapping is strict: a key the module lacks or a
module tensor the checkpoint lacks is an error that names the key and the file.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .layout import ReleaseLayoutError, converted_path

log = logging.getLogger(__name__)


class CheckpointKeyError(ReleaseLayoutError):
    """A released checkpoint's keys or shapes do not match the architecture."""


def read_release_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A released ``.pth``'s state dict (``model`` or ``state_dict`` entry), via its safetensors
    copy when there is one; the first read writes that copy if the folder is writable."""
    path = Path(path)
    converted = converted_path(path)
    # the copy is used unless the pickle beside it is newer (a release file replaced since)
    if converted.is_file() and (
        not path.is_file() or converted.stat().st_mtime >= path.stat().st_mtime
    ):
        return load_file(str(converted))
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ReleaseLayoutError(f"{path}: released checkpoint missing") from None
    except Exception as exc:  # noqa: BLE001 - the unpickler's refusal names the blocked global
        raise ReleaseLayoutError(
            f"{path}: not readable as tensors only (torch.load weights_only=True): {exc}"
        ) from exc
    state = checkpoint
    if isinstance(checkpoint, dict):
        for entry in ("model", "state_dict"):
            if isinstance(checkpoint.get(entry), dict):
                state = checkpoint[entry]
                break
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ReleaseLayoutError(f"{path}: no tensors under 'model' or 'state_dict'")
    # tensors only; shared storage is cloned (safetensors refuses aliases). Written under a
    # temporary name and renamed, so a worker loading at the same time never reads half a file.
    partial = converted.with_name(f".{converted.name}.{os.getpid()}.partial")
    try:
        save_file({k: v.contiguous().clone() for k, v in tensors.items()}, str(partial))
        os.replace(partial, converted)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        log.warning(
            "%s: could not write %s (%s); reading the pickle each time", path, converted, exc
        )
    return tensors


def load_strict(
    module: nn.Module, state: dict[str, torch.Tensor], source: str, released=lambda key: key
) -> None:
    """Copy ``state`` into ``module``: same key set and shapes, else an error naming the key as
    the released file spells it (``released`` maps a module key back to that name)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing:
        raise CheckpointKeyError(
            f"{source}: checkpoint lacks {len(missing)} tensor(s) the model needs, "
            f"first {released(missing[0])!r} (model key {missing[0]!r})"
        )
    if extra:
        raise CheckpointKeyError(
            f"{source}: checkpoint has {len(extra)} tensor(s) the model does not, "
            f"first {released(extra[0])!r}"
        )
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise CheckpointKeyError(
                f"{source}: {released(key)!r} has shape {tuple(state[key].shape)}, the model "
                f"{tuple(value.shape)}"
            )
    module.load_state_dict(state, strict=True)


def _renamer(rules: list[tuple[str, str]], prefix: str = ""):
    """A function naming a module key as the release does: regex rules applied in order."""

    def released(key: str) -> str:
        for pattern, replacement in rules:
            key = re.sub(pattern, replacement, key)
        return prefix + key

    return released


_VIT_NAMES = [
    (r"^embeddings\.class_embedding$", "cls_token"),
    (r"^embeddings\.position_embedding$", "pos_embed"),
    (r"^embeddings\.patch_embedding\.", "patch_embed.proj."),
    (r"^post_layernorm\.", "norm."),
    (r"^encoder\.layers\.(\d+)\.layer_norm1\.", r"blocks.\1.norm1."),
    (r"^encoder\.layers\.(\d+)\.layer_norm2\.", r"blocks.\1.norm2."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.qkv\.", r"blocks.\1.attn.qkv."),
    (r"^encoder\.layers\.(\d+)\.self_attn\.projection\.", r"blocks.\1.attn.proj."),
    (r"^encoder\.layers\.(\d+)\.mlp\.", r"blocks.\1.mlp."),
]
_BLOCK_NAMES = [
    (r"self_attn\.[qkv]_proj\.(weight|bias)$", r"attn.in_proj_\1"),
    (r"self_attn\.out_proj\.", "attn.out_proj."),
    (r"layer_norm1\.", "ln_1."),
    (r"layer_norm2\.", "ln_2."),
    (r"mlp\.fc1\.", "mlp.c_fc."),
    (r"mlp\.fc2\.", "mlp.c_proj."),
]


def vit_released_name(prefix: str):
    """Module key of a mapped BLIP ViT -> its released name under ``prefix``."""
    return _renamer(_VIT_NAMES, prefix)


def clip_released_name(prefix: str):
    """``CLIPModel`` key -> the OpenAI CLIP name under ``prefix`` (ActionCLIP: ``clip.``)."""
    renames = [
        (f"^{re.escape(hf)}" + ("" if hf.endswith(".") else "$"), released)
        for released, hf in _CLIP_NAMES.items()
    ]
    return _renamer(
        [
            (r"^vision_model\.encoder\.layers\.", "visual.transformer.resblocks."),
            (r"^text_model\.encoder\.layers\.", "transformer.resblocks."),
            *renames,
            *_BLOCK_NAMES,
        ],
        prefix,
    )


def adapter_released_name(prefix: str):
    """``TemporalAdapter`` key -> ActionCLIP's adapter name under ``prefix``."""
    return _renamer([(r"^encoder\.layers\.", "transformer.resblocks."), *_BLOCK_NAMES], prefix)


def _take(state: dict, prefix: str, source: str) -> dict[str, torch.Tensor]:
    part = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not part:
        raise CheckpointKeyError(f"{source}: no tensors under {prefix!r}")
    return part


# --- BLIP's ViT (timm layout) -> transformers BlipVisionModel --------------------------------------

_VIT_BLOCK = {
    "norm1": "layer_norm1",
    "attn.qkv": "self_attn.qkv",
    "attn.proj": "self_attn.projection",
    "norm2": "layer_norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}


def blip_vit_to_hf(vit: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """BLIP's ``visual_encoder.*`` (cls_token, pos_embed, patch_embed, blocks, norm) as
    ``BlipVisionModel`` keys. An unknown key is kept under its own name, so the strict load
    names it."""
    out = {}
    for key, value in vit.items():
        if key == "cls_token":
            out["embeddings.class_embedding"] = value
        elif key == "pos_embed":
            out["embeddings.position_embedding"] = value
        elif key.startswith("patch_embed.proj."):
            out["embeddings.patch_embedding." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("norm."):
            out["post_layernorm." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("blocks."):
            _, layer, rest = key.split(".", 2)
            name, kind = rest.rsplit(".", 1)
            if name not in _VIT_BLOCK:
                out[key] = value
                continue
            out[f"encoder.layers.{layer}.{_VIT_BLOCK[name]}.{kind}"] = value
        else:
            out[key] = value
    return out


# --- OpenAI CLIP (the `clip` package's layout) -> transformers CLIPModel / CLIPEncoder ----------


def _resblocks_to_hf(blocks: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """``resblocks.N.*`` of an OpenAI CLIP transformer as ``CLIPEncoder`` ``layers.N.*`` keys
    (the fused attention in_proj is split into q, k, v)."""
    out = {}
    for key, value in blocks.items():
        layer, rest = key.split(".", 1)
        base = f"{prefix}layers.{layer}."
        if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
            kind = "weight" if rest.endswith("weight") else "bias"
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3), strict=True):
                out[f"{base}self_attn.{name}.{kind}"] = part
            continue
        renamed = {
            "attn.out_proj": "self_attn.out_proj",
            "ln_1": "layer_norm1",
            "ln_2": "layer_norm2",
            "mlp.c_fc": "mlp.fc1",
            "mlp.c_proj": "mlp.fc2",
        }
        name, kind = rest.rsplit(".", 1)
        out[base + f"{renamed.get(name, name)}.{kind}"] = value
    return out


# OpenAI CLIP's names (a whole key, or a prefix ending in ".") -> CLIPModel's; the two
# projections are stored as (in, out) matrices, nn.Linear keeps (out, in)
_CLIP_NAMES = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.": "vision_model.pre_layrnorm.",
    "visual.ln_post.": "vision_model.post_layernorm.",
    "visual.proj": "visual_projection.weight",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.": "text_model.final_layer_norm.",
    "text_projection": "text_projection.weight",
    "logit_scale": "logit_scale",
}
_CLIP_TRANSPOSED = ("visual.proj", "text_projection")


def _clip_hf_name(key: str) -> str:
    if key in _CLIP_NAMES:
        return _CLIP_NAMES[key]
    for released, hf in _CLIP_NAMES.items():
        if released.endswith(".") and key.startswith(released):
            return hf + key.removeprefix(released)
    return key  # unknown: the strict load names it


def openai_clip_to_hf(clip: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An OpenAI CLIP state dict (``visual.*``, ``transformer.*``, ...) as ``CLIPModel`` keys."""
    out = {}
    vision_blocks, text_blocks = {}, {}
    for key, value in clip.items():
        if key.startswith("visual.transformer.resblocks."):
            vision_blocks[key.removeprefix("visual.transformer.resblocks.")] = value
        elif key.startswith("transformer.resblocks."):
            text_blocks[key.removeprefix("transformer.resblocks.")] = value
        else:
            out[_clip_hf_name(key)] = value.t().contiguous() if key in _CLIP_TRANSPOSED else value
    out.update(_resblocks_to_hf(vision_blocks, "vision_model.encoder."))
    out.update(_resblocks_to_hf(text_blocks, "text_model.encoder."))
    return out


def adapter_to_hf(adapter: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """ActionCLIP's ``adapter.*`` (frame position embeddings + an OpenAI CLIP transformer) as our
    ``TemporalAdapter`` keys."""
    out, blocks = {}, {}
    for key, value in adapter.items():
        if key.startswith("transformer.resblocks."):
            blocks[key.removeprefix("transformer.resblocks.")] = value
        else:
            out[key] = value
    out.update(_resblocks_to_hf(blocks, "encoder."))
    return out
