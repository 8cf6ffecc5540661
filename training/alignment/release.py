"""The released CogVideoX-5B-I2V folder (THUDM/CogVideoX-5b-I2V on the hub) and the check that a
folder is one, free of torch: the launch form calls ``check_generator_folder`` on the web side so a
wrong ``LABELHUB_COGVIDEOX_PATH`` fails the launch with a message, not a GPU worker an hour later.

The configs below are the released ones (file by file, key by key, as the hub folder holds them);
the replica writer (``training.alignment.replica``) writes them with small widths, and
``training.alignment.cogvideox`` loads both through the same ``from_pretrained`` calls.
"""

from __future__ import annotations

import json
from pathlib import Path

RELEASE_ID = "THUDM/CogVideoX-5b-I2V"

MODEL_INDEX = {
    "_class_name": "CogVideoXImageToVideoPipeline",
    "_diffusers_version": "0.31.0.dev0",
    "scheduler": ["diffusers", "CogVideoXDDIMScheduler"],
    "text_encoder": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "T5Tokenizer"],
    "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLCogVideoX"],
}

# scheduler/scheduler_config.json: v-prediction, zero-terminal-SNR scaled-linear betas, trailing.
SCHEDULER = {
    "_class_name": "CogVideoXDDIMScheduler",
    "_diffusers_version": "0.31.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "clip_sample_range": 1.0,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "sample_max_value": 1.0,
    "set_alpha_to_one": True,
    "snr_shift_scale": 1.0,
    "steps_offset": 0,
    "timestep_spacing": "trailing",
    "trained_betas": None,
}

# transformer/config.json
TRANSFORMER = {
    "_class_name": "CogVideoXTransformer3DModel",
    "_diffusers_version": "0.31.0.dev0",
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "attention_head_dim": 64,
    "dropout": 0.0,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 32,
    "max_text_seq_length": 226,
    "norm_elementwise_affine": True,
    "norm_eps": 1e-05,
    "num_attention_heads": 48,
    "num_layers": 42,
    "out_channels": 16,
    "patch_size": 2,
    "sample_frames": 49,
    "sample_height": 60,
    "sample_width": 90,
    "spatial_interpolation_scale": 1.875,
    "temporal_compression_ratio": 4,
    "temporal_interpolation_scale": 1.0,
    "text_embed_dim": 4096,
    "time_embed_dim": 512,
    "timestep_activation_fn": "silu",
    "use_learned_positional_embeddings": True,
    "use_rotary_positional_embeddings": True,
}

# vae/config.json
VAE = {
    "_class_name": "AutoencoderKLCogVideoX",
    "_diffusers_version": "0.31.0.dev0",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 256, 512],
    "down_block_types": ["CogVideoXDownBlock3D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 16,
    "latents_mean": None,
    "latents_std": None,
    "layers_per_block": 3,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_height": 480,
    "sample_width": 720,
    "scaling_factor": 0.7,
    "shift_factor": None,
    "temporal_compression_ratio": 4,
    "up_block_types": ["CogVideoXUpBlock3D"] * 4,
    "use_post_quant_conv": False,
    "use_quant_conv": False,
}

# text_encoder/config.json: google/t5-v1_1-xxl's encoder.
TEXT_ENCODER = {
    "_name_or_path": "google/t5-v1_1-xxl",
    "architectures": ["T5EncoderModel"],
    "classifier_dropout": 0.0,
    "d_ff": 10240,
    "d_kv": 64,
    "d_model": 4096,
    "decoder_start_token_id": 0,
    "dense_act_fn": "gelu_new",
    "dropout_rate": 0.1,
    "eos_token_id": 1,
    "feed_forward_proj": "gated-gelu",
    "initializer_factor": 1.0,
    "is_encoder_decoder": True,
    "is_gated_act": True,
    "layer_norm_epsilon": 1e-06,
    "model_type": "t5",
    "num_decoder_layers": 24,
    "num_heads": 64,
    "num_layers": 24,
    "output_past": True,
    "pad_token_id": 0,
    "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.44.2",
    "use_cache": True,
    "vocab_size": 32128,
}

# tokenizer/: only spiece.model (T5's sentencepiece unigram model, 32,000 pieces) and these two.
TOKENIZER_EXTRA_IDS = 100
TOKENIZER_MAX_LENGTH = 226


def _token(content: str) -> dict:
    return {
        "content": content,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
    }


def tokenizer_config(vocab_pieces: int = 32000) -> dict:
    """tokenizer/tokenizer_config.json for a sentencepiece model of ``vocab_pieces`` pieces."""
    extras = [f"<extra_id_{i}>" for i in range(TOKENIZER_EXTRA_IDS)]
    decoder = {"0": "<pad>", "1": "</s>", "2": "<unk>"}
    # T5 numbers <extra_id_0> last: <extra_id_i> is id vocab_pieces + 99 - i.
    decoder.update(
        {str(vocab_pieces + TOKENIZER_EXTRA_IDS - 1 - i): e for i, e in enumerate(extras)}
    )
    return {
        "add_prefix_space": True,
        "added_tokens_decoder": {k: {**_token(v), "special": True} for k, v in decoder.items()},
        "additional_special_tokens": extras,
        "clean_up_tokenization_spaces": True,
        "eos_token": "</s>",
        "extra_ids": TOKENIZER_EXTRA_IDS,
        "legacy": True,
        "model_max_length": TOKENIZER_MAX_LENGTH,
        "pad_token": "<pad>",
        "sp_model_kwargs": {},
        "tokenizer_class": "T5Tokenizer",
        "unk_token": "<unk>",
    }


def special_tokens_map() -> dict:
    """tokenizer/special_tokens_map.json."""
    return {
        "additional_special_tokens": [f"<extra_id_{i}>" for i in range(TOKENIZER_EXTRA_IDS)],
        "eos_token": _token("</s>"),
        "pad_token": _token("<pad>"),
        "unk_token": _token("<unk>"),
    }


def init_args(config: dict) -> dict:
    """A released config file's values as constructor arguments: without the ``_class_name``-style
    bookkeeping keys, and for T5 without the fields ``T5Config`` does not take."""
    skip = ("_name_or_path", "architectures", "torch_dtype", "transformers_version")
    return {k: v for k, v in config.items() if not k.startswith("_") and k not in skip}


# ----------------------------------------------------------------------------------------------
# The check: is this folder the released CogVideoX-5B-I2V (or a faithful copy)?
# ----------------------------------------------------------------------------------------------


class GeneratorFolderError(ValueError):
    """``LABELHUB_COGVIDEOX_PATH`` is not a usable CogVideoX-5B-I2V folder; the message says why."""


WEIGHT_NAMES = {
    "transformer": "diffusion_pytorch_model",
    "vae": "diffusion_pytorch_model",
    "text_encoder": "model",
}


def resolve_generator_path(path: str) -> Path:
    """A local folder as it is; a hub id from the local Hugging Face cache only (nothing is ever
    downloaded at run time). Raises ``GeneratorFolderError`` when neither is on this host."""
    folder = Path(path).expanduser()
    if folder.is_dir():
        return folder
    if folder.exists():
        raise GeneratorFolderError(f"{path} is a file, not the CogVideoX-5b-I2V folder")
    looks_like_hub_id = (
        not folder.is_absolute() and path.count("/") == 1 and not path.startswith(".")
    )
    if looks_like_hub_id:
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(repo_id=path, local_files_only=True))
        except Exception as error:  # noqa: BLE001  (not in the cache, in any of its ways)
            raise GeneratorFolderError(
                f"{path} is neither a folder on this host nor in its Hugging Face cache; "
                f"download {RELEASE_ID} once (e.g. `hf download {RELEASE_ID} --local-dir DIR`) "
                f"and set LABELHUB_COGVIDEOX_PATH=DIR (nothing is downloaded at run time): "
                f"{type(error).__name__}"
            ) from None
    raise GeneratorFolderError(f"{path} does not exist on this host")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GeneratorFolderError(f"{path.parent.name}/{path.name} is missing") from None
    except (OSError, json.JSONDecodeError) as error:
        raise GeneratorFolderError(f"{path} is not readable JSON: {error}") from None


def _check_weights(folder: Path, component: str) -> None:
    """Safetensors weights, whole or sharded with an index whose shards are all present."""
    stem, sub = WEIGHT_NAMES[component], folder / component
    if (sub / f"{stem}.safetensors").exists():
        return
    index = sub / f"{stem}.safetensors.index.json"
    if index.exists():
        shards = set(_read_json(index).get("weight_map", {}).values())
        missing = sorted(s for s in shards if not (sub / s).exists())
        if not shards or missing:
            raise GeneratorFolderError(
                f"{component}/ is incomplete: {len(missing)} of {len(shards)} weight shards "
                f"missing ({', '.join(missing[:3]) or 'empty index'}); was the download interrupted?"
            )
        return
    pickles = sorted(p.name for p in sub.glob("*.bin")) + sorted(p.name for p in sub.glob("*.pt"))
    if pickles:
        raise GeneratorFolderError(
            f"{component}/ holds only pickled weights ({pickles[0]}); LabelHub never unpickles "
            f"weights: use the release's safetensors files"
        )
    raise GeneratorFolderError(f"{component}/ has no {stem}.safetensors (nor a sharded index)")


def check_generator_folder(path: str) -> dict:
    """Check that ``path`` holds CogVideoX-5B-I2V in the released diffusers layout; return what it
    found (``folder``, the transformer's ``layers`` and ``heads``). Reads only the JSON files and
    file names (no weights, no torch). Raises ``GeneratorFolderError`` naming what is wrong: a SAT
    checkpoint, a text-to-video model, CogVideoX 1.5, a missing component or shard, pickles."""
    folder = resolve_generator_path(path)
    index_path = folder / "model_index.json"
    if not index_path.exists():
        sat = [p for p in folder.rglob("*.pt") if p.is_file()][:1] or (
            [folder / "latest"] if (folder / "latest").exists() else []
        )
        if sat:
            raise GeneratorFolderError(
                f"{folder} has no model_index.json but {sat[0].relative_to(folder)}: a SAT "
                f"checkpoint (the layout Index-AniSora and CogVideoX's SAT code release). Convert it "
                f"with `manage.py convert_sat_generator` and point LABELHUB_COGVIDEOX_PATH at the result"
            )
        raise GeneratorFolderError(
            f"{folder} has no model_index.json: not a diffusers pipeline folder ({RELEASE_ID})"
        )
    model_index = _read_json(index_path)
    pipeline = model_index.get("_class_name")
    if pipeline == "CogVideoXPipeline":
        raise GeneratorFolderError(
            f"{folder} holds a text-to-video CogVideoX ({pipeline}); LabelHub aligns the "
            f"image-to-video model: use {RELEASE_ID}"
        )
    if pipeline != MODEL_INDEX["_class_name"]:
        raise GeneratorFolderError(
            f"{folder} holds a {pipeline or 'unnamed'} pipeline, not {MODEL_INDEX['_class_name']} "
            f"({RELEASE_ID})"
        )
    missing = [name for name in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
               if not (folder / name).is_dir()]  # fmt: skip
    if missing:
        raise GeneratorFolderError(f"{folder} is incomplete: no {', '.join(missing)} folder")

    transformer = _read_json(folder / "transformer" / "config.json")
    if transformer.get("patch_size_t") is not None or transformer.get("ofs_embed_dim") is not None:
        raise GeneratorFolderError(
            f"{folder} holds CogVideoX 1.5 (transformer patch_size_t="
            f"{transformer.get('patch_size_t')}, ofs_embed_dim={transformer.get('ofs_embed_dim')}); "
            f"LabelHub's cogvideox-5b-i2v preset is CogVideoX-5b-I2V (1.0: 49 frames at 480x720)"
        )
    in_channels, out_channels = transformer.get("in_channels"), transformer.get("out_channels")
    if not out_channels or in_channels != 2 * out_channels:
        raise GeneratorFolderError(
            f"{folder}: transformer in_channels={in_channels}, out_channels={out_channels}: an "
            f"image-to-video transformer reads the noisy latent and the image latent (in = 2 x out); "
            f"this one looks like a text-to-video model"
        )
    vae = _read_json(folder / "vae" / "config.json")
    if vae.get("latent_channels") != out_channels:
        raise GeneratorFolderError(
            f"{folder}: vae latent_channels={vae.get('latent_channels')} does not match the "
            f"transformer's {out_channels} latent channels"
        )
    text_encoder = _read_json(folder / "text_encoder" / "config.json")
    if text_encoder.get("model_type") != "t5" or text_encoder.get("d_model") != transformer.get(
        "text_embed_dim"
    ):
        raise GeneratorFolderError(
            f"{folder}: text_encoder is {text_encoder.get('model_type')} with d_model="
            f"{text_encoder.get('d_model')}; the transformer reads T5 embeddings of "
            f"{transformer.get('text_embed_dim')}"
        )
    scheduler = _read_json(folder / "scheduler" / "scheduler_config.json")
    if scheduler.get("prediction_type") != "v_prediction":
        raise GeneratorFolderError(
            f"{folder}: scheduler prediction_type={scheduler.get('prediction_type')}; "
            f"CogVideoX-5b-I2V predicts v (v_prediction)"
        )
    tokenizer = folder / "tokenizer"
    if not (tokenizer / "spiece.model").exists() and not (tokenizer / "tokenizer.json").exists():
        raise GeneratorFolderError(
            f"{folder}: tokenizer/ has neither spiece.model nor tokenizer.json"
        )
    _read_json(tokenizer / "tokenizer_config.json")
    for component in WEIGHT_NAMES:
        _check_weights(folder, component)
    return {
        "folder": str(folder),
        "layers": transformer.get("num_layers"),
        "heads": transformer.get("num_attention_heads"),
    }
