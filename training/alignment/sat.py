"""Convert a SAT (SwissArmyTransformer) CogVideoX-5B I2V checkpoint, the format Index-AniSora
releases its GAPO-tuned generator in (``5B_RL/<iteration>/mp_rank_00_model_states.pt``), into the
diffusers layout the ``cogvideox-5b-i2v`` preset loads. No Django.

The transformer's keys are renamed after SAT's module tree (anisora_rl/sat/dit_video_concat.py:
``mixins.patch_embed``, ``mixins.pos_embed``, ``mixins.adaln_layer``, ``mixins.final_layer``,
``transformer.layers.N``) onto diffusers' ``CogVideoXTransformer3DModel``; the fused
``query_key_value`` is split, and each layer's 12-way adaLN modulation is regrouped into the two
``CogVideoXLayerNormZero`` norms (as diffusers' scripts/convert_cogvideox_to_diffusers.py does).
The VAE, T5, tokenizer and scheduler are the released CogVideoX-5b-I2V ones (AniSora tunes only
the transformer), copied from a released diffusers folder.

The checkpoint is read with ``torch.load(weights_only=True)``: tensors and plain containers only,
never arbitrary pickled objects.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from training.alignment.release import check_generator_folder

PREFIX = "model.diffusion_model."
RENAMES = (  # applied in order to the key without PREFIX
    ("mixins.patch_embed.", "patch_embed."),
    ("mixins.pos_embed.pos_embedding", "patch_embed.pos_embedding"),
    ("mixins.final_layer.norm_final.", "norm_out.norm."),
    ("mixins.final_layer.linear.", "proj_out."),
    ("mixins.final_layer.adaLN_modulation.1.", "norm_out.linear."),
    ("time_embed.0.", "time_embedding.linear_1."),
    ("time_embed.2.", "time_embedding.linear_2."),
    ("transformer.final_layernorm.", "norm_final."),
)
LAYER_RENAMES = (
    ("input_layernorm.", "norm1.norm."),
    ("post_attention_layernorm.", "norm2.norm."),
    ("attention.dense.", "attn1.to_out.0."),
    ("mlp.dense_h_to_4h.", "ff.net.0.proj."),
    ("mlp.dense_4h_to_h.", "ff.net.2."),
)
DROPPED = ("freqs_sin", "freqs_cos", "word_embeddings", "position_embeddings", "embed_tokens")


def read_sat_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The model state dict of a SAT checkpoint file, or of a SAT folder (``latest`` names the
    iteration folder holding ``mp_rank_00_model_states.pt``)."""
    path = Path(path)
    if path.is_dir():
        latest = path / "latest"
        if not latest.exists():
            raise ValueError(f"{path} has no 'latest' file naming the iteration to convert")
        path = path / latest.read_text().strip() / "mp_rank_00_model_states.pt"
    if not path.is_file():
        raise ValueError(f"no SAT checkpoint at {path}")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001  (UnpicklingError and friends)
        raise ValueError(
            f"{path} is not a plain tensor checkpoint (weights_only refused it: {error}); "
            f"LabelHub never unpickles arbitrary objects"
        ) from None
    for key in ("module", "model", "state_dict"):
        if isinstance(saved, dict) and isinstance(saved.get(key), dict):
            saved = saved[key]
    if not any(k.startswith(PREFIX) for k in saved):
        raise ValueError(f"{path} holds no {PREFIX}* keys: not a SAT CogVideoX checkpoint")
    return saved


def convert_transformer_state(sat: dict[str, torch.Tensor], *, text_length: int, video_tokens: int):
    """SAT transformer keys -> diffusers ``CogVideoXTransformer3DModel`` keys.

    ``pos_embedding`` is cut to its first ``text_length + video_tokens`` rows: SAT adds exactly
    that prefix for a video of that many tokens (``position_embedding_forward``), which is how the
    AniSora RL model, trained with a larger grid, samples 49 frames at 480x720."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sat.items():
        if not key.startswith(PREFIX) or any(d in key for d in DROPPED):
            continue
        name = key[len(PREFIX) :]
        if name.startswith("transformer.layers."):
            _, _, layer, rest = name.split(".", 3)
            block = f"transformer_blocks.{layer}."
            if rest.startswith("attention.query_key_value."):
                kind = rest.rsplit(".", 1)[1]
                for part, chunk in zip(
                    ("to_q", "to_k", "to_v"), value.chunk(3, dim=0), strict=True
                ):
                    out[f"{block}attn1.{part}.{kind}"] = chunk.clone()
                continue
            for old, new in LAYER_RENAMES:
                if rest.startswith(old):
                    out[block + new + rest[len(old) :]] = value
                    break
            else:
                raise ValueError(f"unknown SAT layer key {key}")
            continue
        if name.startswith("mixins.adaln_layer.adaLN_modulations."):
            _, _, _, layer, _, kind = name.split(".")
            chunks = value.chunk(12, dim=0)  # msa(3) mlp(3) text msa(3) text mlp(3)
            block = f"transformer_blocks.{layer}."
            out[f"{block}norm1.linear.{kind}"] = torch.cat(chunks[0:3] + chunks[6:9])
            out[f"{block}norm2.linear.{kind}"] = torch.cat(chunks[3:6] + chunks[9:12])
            continue
        if name.startswith(("mixins.adaln_layer.query_layernorm_list.",
                            "mixins.adaln_layer.key_layernorm_list.")):  # fmt: skip
            which = "norm_q" if "query" in name else "norm_k"
            layer, kind = name.split(".")[-2:]
            out[f"transformer_blocks.{layer}.attn1.{which}.{kind}"] = value
            continue
        for old, new in RENAMES:
            if name.startswith(old):
                name = new + name[len(old) :]
                break
        else:
            raise ValueError(f"unknown SAT key {key}")
        if name == "patch_embed.pos_embedding":
            value = value[:, : text_length + video_tokens].clone()
        out[name] = value
    return out


def convert_sat_generator(checkpoint: str | Path, *, base: str | Path, out: str | Path) -> Path:
    """Write ``out``: the released folder ``base`` with its transformer replaced by the SAT
    checkpoint's. Returns ``out``, checked by ``check_generator_folder``."""
    from diffusers import CogVideoXTransformer3DModel

    sat = read_sat_checkpoint(checkpoint)  # memory-mapped: cheap, and refused before any work
    base = Path(check_generator_folder(str(base))["folder"])
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} exists; choose a new folder")
    config = json.loads((base / "transformer" / "config.json").read_text())
    p = config["patch_size"]
    video_tokens = (
        ((config["sample_frames"] - 1) // config["temporal_compression_ratio"] + 1)
        * (config["sample_height"] // p)
        * (config["sample_width"] // p)
    )
    state = convert_transformer_state(
        sat,
        text_length=config["max_text_seq_length"],
        video_tokens=video_tokens,
    )
    transformer = CogVideoXTransformer3DModel.from_config(config)
    dtype = next(iter(state.values())).dtype
    missing, unexpected = transformer.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"the SAT checkpoint does not fit CogVideoX-5b-I2V's transformer: missing "
            f"{missing[:3]}, unexpected {unexpected[:3]}"
        )
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for item in base.iterdir():
        if item.name == "transformer":
            continue
        if item.is_dir():
            shutil.copytree(item, tmp / item.name, copy_function=_link_or_copy)
        else:
            tmp.mkdir(parents=True, exist_ok=True)
            _link_or_copy(item, tmp / item.name)
    transformer.to(dtype).save_pretrained(tmp / "transformer", max_shard_size="5GB")
    tmp.rename(out)  # complete or absent
    check_generator_folder(str(out))
    return out


def _link_or_copy(source, target) -> None:
    """Hard-link the released files (no second copy of 10 GB on the same disk), else copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
