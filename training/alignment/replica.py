"""A replica of the released CogVideoX-5B-I2V folder: the hub layout, file names and config keys
(``training.alignment.release``), safetensors weights sharded as the release shards them, and the
tokenizer as a *trained* sentencepiece model with the release's two JSON files beside it; only
the widths are small and the weights random. Tests and ``bench/gpu_smoke.py --cpu-small`` load it
through the production ``load_generator("cogvideox-5b-i2v", path=...)``, so the loading path users
take with real weights is the one CI runs. No Django.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from training.alignment import release
from training.alignment.release import init_args

# Small widths; everything else (keys, layout, block types, text length) as released.
REPLICA_TRANSFORMER = {
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "num_layers": 2,
    "in_channels": 8,  # noisy latent + image latent, 4 channels each
    "out_channels": 4,
    "text_embed_dim": 32,
    "time_embed_dim": 32,
    "sample_frames": 9,
    "sample_height": 4,  # latent rows: 32 px with the VAE's 8x spatial compression
    "sample_width": 6,  # 48 px
}
REPLICA_VAE = {
    "block_out_channels": [8, 8, 8, 8],  # four blocks, as released: 8x spatial compression
    "latent_channels": 4,
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "sample_height": 32,
    "sample_width": 48,
}
REPLICA_TEXT_ENCODER = {
    "d_ff": 64,
    "d_kv": 8,
    "d_model": 32,
    "num_decoder_layers": 1,
    "num_heads": 4,
    "num_layers": 1,
    "relative_attention_num_buckets": 8,
}
REPLICA_VOCAB_PIECES = 64
WORDS = (
    "girl boy cat dog knight witch robot dragon friends teacher student pilot samurai idol "
    "runs jumps dances waves walks turns smiles cries laughs fights flies swims sings reads "
    "rain street sea room forest city school castle garden train station rooftop festival "
    "bright dark night morning sunset autumn winter spring summer snow wind petals lantern "
    "slowly quickly gently suddenly camera pans zooms follows close wide anime style"
).split()
SENTENCES = [
    f"a {WORDS[i % 14]} {WORDS[14 + i % 14]} in the {WORDS[28 + i % 14]} "
    f"{WORDS[42 + (i * 7) % 14]} {WORDS[56 + (i * 5) % len(WORDS[56:])]}"
    for i in range(400)
]


def train_sentencepiece(vocab_pieces: int = REPLICA_VOCAB_PIECES) -> bytes:
    """A T5-style sentencepiece unigram model (pad 0, </s> 1, <unk> 2, no <s>) trained on a small
    English corpus: the same file format and special ids as T5's ``spiece.model``."""
    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES),
        model_writer=model,
        vocab_size=vocab_pieces,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def _write_json(path: Path, values: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")


def write_release_replica(folder: str | Path, *, seed: int = 0, dtype=torch.bfloat16) -> Path:
    """Write a small-width CogVideoX-5B-I2V folder in the released layout; returns the folder.

    Weights are random (seeded) and stored in ``dtype`` (the release ships bf16); the transformer
    and the text encoder are sharded with an index, as on the hub."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    folder = Path(folder)
    torch.manual_seed(seed)
    configs = {
        "transformer": {**release.TRANSFORMER, **REPLICA_TRANSFORMER},
        "vae": {**release.VAE, **REPLICA_VAE},
        "text_encoder": {
            **release.TEXT_ENCODER,
            **REPLICA_TEXT_ENCODER,
            "vocab_size": REPLICA_VOCAB_PIECES + release.TOKENIZER_EXTRA_IDS + 28,
        },
    }

    transformer = CogVideoXTransformer3DModel(**init_args(configs["transformer"]))
    transformer.to(dtype).save_pretrained(folder / "transformer", max_shard_size="40KB")
    vae = AutoencoderKLCogVideoX(**init_args(configs["vae"]))
    vae.to(dtype).save_pretrained(folder / "vae")
    T5EncoderModel(T5Config(**init_args(configs["text_encoder"]))).to(dtype).save_pretrained(
        folder / "text_encoder", max_shard_size="20KB"
    )
    # The config files exactly as released (key set and values), widths aside: what the installed
    # libraries would add (newer keys) is not in the release, so the loader must do without it.
    for name, config in configs.items():
        _write_json(folder / name / "config.json", config)
    _write_json(folder / "scheduler" / "scheduler_config.json", release.SCHEDULER)
    _write_json(folder / "model_index.json", release.MODEL_INDEX)
    tokenizer = folder / "tokenizer"
    tokenizer.mkdir(parents=True, exist_ok=True)
    (tokenizer / "spiece.model").write_bytes(train_sentencepiece())
    _write_json(tokenizer / "tokenizer_config.json", release.tokenizer_config(REPLICA_VOCAB_PIECES))
    _write_json(tokenizer / "special_tokens_map.json", release.special_tokens_map())
    return folder


def build_full_size_random(device, dtype):
    """CogVideoX-5B-I2V at full size from the released configs with random weights (no download),
    and a replica's tokenizer (the released one is not at hand): the benches' GPU path."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    from training.alignment.cogvideox import GeneratorComponents, shape_of

    torch.manual_seed(0)
    with torch.device(device):
        transformer = CogVideoXTransformer3DModel(**init_args(release.TRANSFORMER)).to(dtype)
        vae = AutoencoderKLCogVideoX(**init_args(release.VAE)).to(dtype)
        text_encoder = T5EncoderModel(T5Config(**init_args(release.TEXT_ENCODER))).to(dtype)
    import tempfile

    tokenizer_dir = Path(tempfile.mkdtemp(prefix="replica-tokenizer-"))
    (tokenizer_dir / "spiece.model").write_bytes(train_sentencepiece())
    _write_json(
        tokenizer_dir / "tokenizer_config.json", release.tokenizer_config(REPLICA_VOCAB_PIECES)
    )
    _write_json(tokenizer_dir / "special_tokens_map.json", release.special_tokens_map())
    for module in (transformer, vae, text_encoder):
        module.requires_grad_(False).eval()
    return GeneratorComponents(
        "cogvideox-5b-i2v",
        transformer,
        vae,
        text_encoder,
        T5Tokenizer.from_pretrained(tokenizer_dir),
        CogVideoXDDIMScheduler.from_config(release.SCHEDULER),
        shape_of(transformer.config, vae.config),
    )
