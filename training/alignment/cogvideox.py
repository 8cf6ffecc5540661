"""The image-to-video generator (CogVideoX I2V, diffusers) built from a named preset. No Django.

Presets:
- ``tiny``: the CogVideoX I2V architecture (3-D transformer with rotary + learned positional
  embeddings, causal 3-D VAE, T5 encoder, v-prediction DDIM scheduler) from small configs, built
  in code with seeded random weights and a T5 tokenizer built from an in-code vocabulary. Small
  enough that a whole round (generate, train, generate) runs on a CPU in seconds.
  The tiny VAE is the one exception to "random weights": a random VAE's decoder is not the inverse
  of its encoder, so no preference learnt on encoded videos could reach the decoded ones. It is
  fitted to reconstruct smooth synthetic videos for a few hundred steps (seeded, deterministic)
  and cached under ``cache_dir``.
- ``cogvideox-5b-i2v``: the released weights, loaded with ``from_pretrained`` from a folder in
  the released layout or a hub id already in the local cache (``LABELHUB_COGVIDEOX_PATH``,
  checked by ``release.check_generator_folder``). Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from training.alignment import release
from training.alignment.config import PRESETS, SHAPES, VideoShape  # noqa: F401  (re-exported)
from training.alignment.release import check_generator_folder, init_args

# The scheduler and transformer of THUDM/CogVideoX-5b-I2V (release.py holds the released files);
# the benches build the transformer with random weights, the tiny preset shrinks it.
SCHEDULER_CONFIG = init_args(release.SCHEDULER)
COGVIDEOX_5B_I2V_TRANSFORMER = init_args(release.TRANSFORMER)

TINY_LATENT_CHANNELS = 4
TINY_TEXT_TOKENS = 16
TINY_TRANSFORMER = {
    **COGVIDEOX_5B_I2V_TRANSFORMER,
    "attention_head_dim": 16,
    "num_attention_heads": 2,
    "num_layers": 2,
    "in_channels": 2
    * TINY_LATENT_CHANNELS,  # noisy video latent + image latent on the channel axis
    "out_channels": TINY_LATENT_CHANNELS,
    "max_text_seq_length": TINY_TEXT_TOKENS,
    "text_embed_dim": 32,
    "time_embed_dim": 32,
    "sample_frames": SHAPES["tiny"].frames,
    "sample_height": SHAPES["tiny"].height // 4,  # the tiny VAE downsamples 4x in space
    "sample_width": SHAPES["tiny"].width // 4,
}
TINY_VAE = {
    "block_out_channels": (16, 16, 16),
    "down_block_types": ("CogVideoXDownBlock3D",) * 3,
    "up_block_types": ("CogVideoXUpBlock3D",) * 3,
    "latent_channels": TINY_LATENT_CHANNELS,
    "layers_per_block": 1,
    "norm_num_groups": 4,
    "temporal_compression_ratio": 4,
    "sample_height": SHAPES["tiny"].height,
    "sample_width": SHAPES["tiny"].width,
    "scaling_factor": 0.7,
}
TINY_T5 = {
    "d_model": 32,
    "d_kv": 8,
    "d_ff": 64,
    "num_layers": 1,
    "num_heads": 4,
    "relative_attention_num_buckets": 8,
    "dropout_rate": 0.0,
}
TINY_WORDS = (
    "a girl boy cat dog character runs jumps dances waves walks sits stands turns smiles looks "
    "at the in on with and of red blue green white black bright dark sky sea city street room "
    "forest rain snow wind hair sword magic light night day camera slowly quickly anime scene"
).split()
TINY_VAE_FIT_STEPS = 150
TINY_SEED = 1234


@dataclass
class GeneratorComponents:
    """The five pieces of ``CogVideoXImageToVideoPipeline``, plus what the preset is."""

    preset: str
    transformer: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler: object
    shape: VideoShape

    @property
    def max_text_tokens(self) -> int:
        return int(self.transformer.config.max_text_seq_length)


def default_cache_dir() -> Path:
    """Where built-once artefacts of the tiny preset are cached (``LABELHUB_GENERATOR_CACHE``)."""
    return Path(
        os.environ.get(
            "LABELHUB_GENERATOR_CACHE", Path(tempfile.gettempdir()) / "labelhub-generator"
        )
    )


def load_generator(
    preset: str,
    *,
    path: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: Path | None = None,
) -> GeneratorComponents:
    """Build (``tiny``) or load (``cogvideox-5b-i2v`` from ``path``) the generator's components."""
    if preset == "tiny":
        components = build_tiny(cache_dir=cache_dir or default_cache_dir())
    elif preset == "cogvideox-5b-i2v":
        if not path:
            raise ValueError(
                "the cogvideox-5b-i2v preset needs a path: a local directory or hub id (LABELHUB_COGVIDEOX_PATH)"
            )
        components = load_pretrained(path, dtype=dtype)
    else:
        raise ValueError(
            f"unknown generator preset {preset!r}; expected one of {', '.join(PRESETS)}"
        )
    for module in (components.transformer, components.vae, components.text_encoder):
        if module.dtype != dtype:
            module.to(dtype=dtype)
        module.to(device=device)
        module.requires_grad_(False)
        module.eval()
    return components


def load_pretrained(path: str, *, dtype: torch.dtype) -> GeneratorComponents:
    """Load CogVideoX-5B-I2V's components from a folder in the released layout (or a hub id already
    in the local cache), always ``local_files_only``. The folder is checked first
    (``check_generator_folder``), so a wrong one fails here with the same message as at launch."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXTransformer3DModel,
    )
    from transformers import T5EncoderModel, T5Tokenizer

    folder = check_generator_folder(path)["folder"]
    kw = {"local_files_only": True}
    transformer = CogVideoXTransformer3DModel.from_pretrained(
        folder, subfolder="transformer", torch_dtype=dtype, **kw
    )
    vae = AutoencoderKLCogVideoX.from_pretrained(folder, subfolder="vae", torch_dtype=dtype, **kw)
    return GeneratorComponents(
        preset="cogvideox-5b-i2v",
        transformer=transformer,
        vae=vae,
        text_encoder=T5EncoderModel.from_pretrained(
            folder, subfolder="text_encoder", torch_dtype=dtype, **kw
        ),
        # T5's sentencepiece ``spiece.model`` is converted to a fast tokenizer on load: that
        # needs ``sentencepiece`` and ``protobuf`` (both declared dependencies).
        tokenizer=T5Tokenizer.from_pretrained(folder, subfolder="tokenizer", **kw),
        scheduler=CogVideoXDDIMScheduler.from_pretrained(folder, subfolder="scheduler", **kw),
        shape=shape_of(transformer.config, vae.config),
    )


def shape_of(transformer_config, vae_config) -> VideoShape:
    """The video a loaded CogVideoX I2V generates: the size its learned positional embedding was
    built for (49 frames at 480x720 for the release), at the preset's fps and sampling defaults."""
    spatial = 2 ** (len(vae_config.block_out_channels) - 1)
    full = SHAPES["cogvideox-5b-i2v"]
    return replace(
        full,
        frames=int(transformer_config.sample_frames),
        height=int(transformer_config.sample_height) * spatial,
        width=int(transformer_config.sample_width) * spatial,
    )


def build_tiny_tokenizer():
    """A T5 tokenizer (Unigram, like T5's sentencepiece) from an in-code vocabulary: no download."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [("▁" + word, -2.0) for word in TINY_WORDS]
    vocab += [("▁", -3.0)] + [(ch, -5.0) for ch in "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_tiny(*, cache_dir: Path) -> GeneratorComponents:
    """The tiny preset: CogVideoX I2V architecture from small configs, seeded random weights."""
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(TINY_SEED)
    transformer = CogVideoXTransformer3DModel(**TINY_TRANSFORMER)
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), **TINY_T5))
    vae = AutoencoderKLCogVideoX(**TINY_VAE)
    vae.load_state_dict(_fitted_tiny_vae_state(vae, cache_dir))
    return GeneratorComponents(
        preset="tiny",
        transformer=transformer,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=CogVideoXDDIMScheduler(**SCHEDULER_CONFIG),
        shape=SHAPES["tiny"],
    )


def _fitted_tiny_vae_state(vae: torch.nn.Module, cache_dir: Path) -> dict:
    from safetensors.torch import load_file, save_file

    key = hashlib.sha256(
        json.dumps(
            [TINY_VAE, TINY_VAE_FIT_STEPS, TINY_SEED, asdict(SHAPES["tiny"])], default=str
        ).encode()
    ).hexdigest()[:16]
    path = Path(cache_dir) / f"tiny-vae-{key}.safetensors"
    if path.exists():
        return load_file(path)
    fit_tiny_vae(vae, steps=TINY_VAE_FIT_STEPS)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(tmp))
    os.replace(tmp, path)  # atomic: concurrent builders never read a half-written file
    return vae.state_dict()


def smooth_videos(batch: int, shape: VideoShape, generator: torch.Generator) -> torch.Tensor:
    """Synthetic smooth videos in [-1, 1], [B, C, F, H, W]: colour gradients drifting over time."""
    coarse = torch.rand(batch, 3, 2, 3, 3, generator=generator) * 2 - 1
    level = torch.rand(batch, 1, 1, 1, 1, generator=generator) * 1.6 - 0.8
    video = torch.nn.functional.interpolate(
        coarse, size=(shape.frames, shape.height, shape.width), mode="trilinear", align_corners=True
    )
    return (0.6 * video + level).clamp(-1, 1)


def fit_tiny_vae(vae: torch.nn.Module, *, steps: int, lr: float = 3e-3) -> list[float]:
    """Fit the tiny VAE to reconstruct smooth videos (KL-regularised), so decode(encode(x)) ~ x."""
    generator = torch.Generator().manual_seed(TINY_SEED)
    shape = SHAPES["tiny"]
    optimizer = torch.optim.AdamW(vae.parameters(), lr=lr)
    vae.train()
    losses = []
    for _ in range(steps):
        video = smooth_videos(4, shape, generator)
        posterior = vae.encode(video).latent_dist
        z = posterior.sample(generator=generator)
        recon = vae.decode(z).sample
        loss = torch.nn.functional.mse_loss(recon, video) + 1e-4 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    vae.eval()
    return losses
