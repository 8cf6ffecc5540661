"""Named presets that build AnimeReward's encoders, all transformers classes.

- ``tiny``: the same architectures from small configs with random weights, built in code (tests,
  demo, CPU). Text goes through a small hashing tokenizer, since real vocabularies are downloads.
- ``full``: the real checkpoints, loaded with ``from_pretrained`` from a local directory or hub id.
  Sources default to the hub ids below and are overridden by plain values from the caller (the
  Django side reads them from settings). ``random_weights=True`` builds the full architectures from
  their published configs without loading anything (the throughput benchmark).

Encoders: CLIP (vision + text; appeal, text and image consistency), the Idefics2 vision transformer
(smoothness, as the seed builds it on Mantis-8B-Idefics2's vision tower), X-CLIP (motion),
GroundingDINO + SAM + BLIP (character consistency: detect, track, embed).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import (
    BertConfig,
    BlipConfig,
    BlipForImageTextRetrieval,
    CLIPConfig,
    CLIPModel,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    Idefics2Config,
    SamConfig,
    SamModel,
    SwinConfig,
    XCLIPConfig,
    XCLIPModel,
)
from transformers.models.idefics2.configuration_idefics2 import Idefics2VisionConfig
from transformers.models.idefics2.modeling_idefics2 import Idefics2VisionTransformer

from .config import (  # noqa: F401  (re-exported: the presets' names live in config)
    ENCODER_NAMES,
    FULL_SOURCES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_MEAN,
    OPENAI_STD,
    PRESETS,
    RANDOM_ENCODER_SEED,
    ImageSpec,
    RewardPreset,
    get_preset,
    missing_source_files,
)


class HashTokenizer:
    """Word-level tokenizer with ids from a stable hash: no vocabulary file, so nothing to download.

    Used by ``tiny`` and by randomly initialised full architectures; real checkpoints use their own
    tokenizer. ``eos_id`` is the largest id, so CLIP/X-CLIP pooling (argmax or first EOS) finds it.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        bos_id: int,
        eos_id: int,
        pad_id: int,
        word_ids: tuple[int, int],
        period_id: int | None = None,
        max_length: int = 32,
    ):
        self.vocab_size, self.bos_id, self.eos_id, self.pad_id = vocab_size, bos_id, eos_id, pad_id
        self.word_ids, self.period_id, self.max_length = word_ids, period_id, max_length

    def _word_id(self, word: str) -> int:
        if word == "." and self.period_id is not None:
            return self.period_id
        low, high = self.word_ids
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
        return low + digest % (high - low)

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        rows = []
        for text in texts:
            words = re.findall(r"\w+|[^\w\s]", text.lower())[: self.max_length - 2]
            rows.append([self.bos_id, *(self._word_id(w) for w in words), self.eos_id])
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row)
            attention_mask[i, : len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}


class PretrainedTokenizer:
    """Adapter so a checkpoint's own tokenizer has the same call shape as ``HashTokenizer``."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        out = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": out["input_ids"], "attention_mask": out["attention_mask"]}


@dataclass
class Encoders:
    """The six backbones and their tokenizers. Shared by the six dimension models when frozen."""

    preset: RewardPreset
    clip: CLIPModel
    idefics2: Idefics2VisionTransformer
    xclip: XCLIPModel
    grounding_dino: GroundingDinoForObjectDetection
    sam: SamModel
    blip: BlipForImageTextRetrieval
    clip_tokenizer: object
    xclip_tokenizer: object
    grounding_dino_tokenizer: object
    sources: dict[str, str] = field(default_factory=dict)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {name: getattr(self, name) for name in ENCODER_NAMES}


# --- configs -------------------------------------------------------------------------------------


# The tiny preset's widths: every transformer block of it is this small (the architectures are the
# real ones; only widths and depths shrink).
_SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
_SMALL_VISION = dict(**_SMALL, image_size=32, patch_size=8)


def _tiny_configs() -> dict[str, object]:
    clip_vocab = 1000
    clip = CLIPConfig(
        text_config=dict(
            vocab_size=clip_vocab,
            **_SMALL,
            max_position_embeddings=40,
            bos_token_id=clip_vocab - 2,
            eos_token_id=clip_vocab - 1,
            pad_token_id=clip_vocab - 1,
        ),
        vision_config=dict(_SMALL_VISION),
        projection_dim=32,
    )
    idefics2 = Idefics2VisionConfig(**_SMALL_VISION)
    xclip = XCLIPConfig(
        text_config=dict(
            vocab_size=clip_vocab,
            **_SMALL,
            max_position_embeddings=40,
            bos_token_id=clip_vocab - 2,
            eos_token_id=clip_vocab - 1,
            pad_token_id=0,
        ),
        vision_config=dict(
            **_SMALL_VISION,
            num_frames=8,
            mit_hidden_size=32,
            mit_intermediate_size=64,
            mit_num_hidden_layers=1,
            mit_num_attention_heads=2,
        ),
        projection_dim=32,
        prompt_layers=1,
        prompt_attention_heads=2,
        prompt_num_attention_heads=2,
        prompt_projection_dropout=0.0,
    )
    grounding_dino = GroundingDinoConfig(
        backbone_config=SwinConfig(
            image_size=64,
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 1, 2, 2],
            window_size=4,
            out_indices=[3, 4],
        ),
        text_config=BertConfig(
            vocab_size=1200,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_queries=8,
        num_feature_levels=2,
        max_text_len=16,
        encoder_n_points=2,
        decoder_n_points=2,
    )
    sam = SamConfig(
        vision_config=dict(
            hidden_size=32,
            output_channels=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=64,
            patch_size=8,
            mlp_dim=64,
            global_attn_indexes=[1],
            window_size=4,
            num_pos_feats=8,
        ),
        prompt_encoder_config=dict(
            hidden_size=16, image_size=64, patch_size=8, mask_input_channels=4
        ),
        mask_decoder_config=dict(
            hidden_size=16,
            mlp_dim=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            iou_head_hidden_dim=16,
        ),
    )
    blip = BlipConfig(
        # BLIP's vision default initializer_range is 1e-10 (weights always come from a checkpoint); a
        # randomly built encoder needs a real spread or every crop embeds to the same vector.
        vision_config=dict(
            **_SMALL_VISION,
            initializer_range=0.02,
        ),
        text_config=dict(
            vocab_size=1000,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            encoder_hidden_size=32,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
            sep_token_id=2,
        ),
        image_text_hidden_size=32,
    )
    return {
        "clip": clip,
        "idefics2": idefics2,
        "xclip": xclip,
        "grounding_dino": grounding_dino,
        "sam": sam,
        "blip": blip,
    }


def _full_configs() -> dict[str, object]:
    """The published configs of the full checkpoints, written out so nothing is fetched."""
    clip = CLIPConfig(  # openai/clip-vit-large-patch14 (ViT-L/14)
        text_config=dict(
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            projection_dim=768,
        ),
        vision_config=dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=224,
            patch_size=14,
            projection_dim=768,
        ),
        projection_dim=768,
    )
    return {
        "clip": clip,
        # Mantis-8B-Idefics2 / idefics2-8b vision tower: SigLIP-so400m/14 at up to 980 px
        "idefics2": Idefics2VisionConfig(
            hidden_size=1152,
            intermediate_size=4304,
            num_hidden_layers=27,
            num_attention_heads=16,
            image_size=980,
            patch_size=14,
        ),
        "xclip": XCLIPConfig(),  # defaults are microsoft/xclip-base-patch32 (8 frames)
        "grounding_dino": GroundingDinoConfig(),  # defaults are grounding-dino-tiny (Swin-T + BERT-base)
        "sam": SamConfig(),  # defaults are sam-vit-base
        # defaults are blip-itm-base-coco (ViT-B/16 at 384); a real init spread, as above
        "blip": BlipConfig(vision_config={"initializer_range": 0.02}),
    }


_MODEL_CLASSES = {
    "clip": CLIPModel,
    "idefics2": Idefics2VisionTransformer,
    "xclip": XCLIPModel,
    "grounding_dino": GroundingDinoForObjectDetection,
    "sam": SamModel,
    "blip": BlipForImageTextRetrieval,
}


def _hash_tokenizers(configs: dict) -> dict[str, HashTokenizer]:
    clip_vocab = configs["clip"].text_config.vocab_size
    xclip_vocab = configs["xclip"].text_config.vocab_size
    bert_vocab = configs["grounding_dino"].text_config.vocab_size
    return {
        "clip_tokenizer": HashTokenizer(
            vocab_size=clip_vocab,
            bos_id=clip_vocab - 2,
            eos_id=clip_vocab - 1,
            pad_id=clip_vocab - 1,
            word_ids=(1, clip_vocab - 2),
            max_length=32,
        ),
        "xclip_tokenizer": HashTokenizer(
            vocab_size=xclip_vocab,
            bos_id=xclip_vocab - 2,
            eos_id=xclip_vocab - 1,
            pad_id=0,
            word_ids=(1, xclip_vocab - 2),
            max_length=32,
        ),
        # BERT-style ids: [CLS]=101, [SEP]=102, "."=1012 are GroundingDINO's phrase delimiters.
        "grounding_dino_tokenizer": HashTokenizer(
            vocab_size=bert_vocab,
            bos_id=101,
            eos_id=102,
            pad_id=0,
            word_ids=(1030, bert_vocab),
            period_id=1012,
            max_length=configs["grounding_dino"].max_text_len,
        ),
    }


def load_idefics2_vision(source: str) -> Idefics2VisionTransformer:
    """The Idefics2 vision transformer from a saved ``Idefics2VisionTransformer`` folder or from
    the vision tower of a whole Idefics2 / Mantis-Idefics2 folder as its hub repository ships it
    (config.json + safetensors shards and their index; only the tower's tensors are read)."""
    import json
    from pathlib import Path

    from safetensors import safe_open

    folder = Path(source)
    if not (folder / "config.json").is_file():
        raise ValueError(
            f"{source}: not a local Idefics2 folder (config.json missing); weights are never "
            "fetched at run time"
        )
    raw = json.loads((folder / "config.json").read_text())
    if raw.get("model_type") == "idefics2_vision":
        return Idefics2VisionTransformer.from_pretrained(
            source, local_files_only=True, use_safetensors=True
        )
    if raw.get("model_type") != "idefics2":
        raise ValueError(
            f"{source}: not an Idefics2 checkpoint (model_type {raw.get('model_type')!r})"
        )
    config = Idefics2Config.from_pretrained(source)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        names = ["model.safetensors"]
    state = {}
    for name in names:
        if not (folder / name).is_file():
            raise ValueError(f"{source}: {name} missing")
        with safe_open(str(folder / name), framework="pt") as f:
            for key in f.keys():
                for prefix in ("model.vision_model.", "vision_model."):
                    if key.startswith(prefix):
                        state[key.removeprefix(prefix)] = f.get_tensor(key)
    model = Idefics2VisionTransformer(config.vision_config)
    missing, _ = model.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(
            f"{source}: the vision tower lacks {len(missing)} tensors, first {missing[0]!r}"
        )
    return model


class ConvTranspose2x2(nn.ConvTranspose2d):
    """``ConvTranspose2d`` with kernel 2 and stride 2 (SAM's mask upscaling) as one matmul: each
    input pixel maps to its own 2 x 2 output block, so no overlap sums are needed. Same weights and
    output as the original; ~2x faster on a CPU at SAM's small channel counts."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        n, c, h, w = x.shape
        out = self.weight.shape[1]
        y = x.permute(0, 2, 3, 1).reshape(-1, c) @ self.weight.reshape(c, -1)
        y = y.view(n, h, w, out, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(n, out, 2 * h, 2 * w)
        return y + self.bias.view(1, -1, 1, 1)


class ChannelsFirstLayerNorm(nn.LayerNorm):
    """LayerNorm over dim 1 of (N, C, H, W), without SAM's permute-normalise-permute round trip."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(1, keepdim=True)
        scale = torch.rsqrt((centred * centred).mean(1, keepdim=True) + self.eps)
        return centred * scale * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def speed_up_sam_decoder(sam: SamModel) -> None:
    """Swap SAM's mask-upscaling layers for the equivalent faster ones above (weights kept)."""
    decoder = sam.mask_decoder
    for name in ("upscale_conv1", "upscale_conv2"):
        old = getattr(decoder, name)
        if old.kernel_size == (2, 2) and old.stride == (2, 2) and old.padding == (0, 0):
            new = ConvTranspose2x2(old.in_channels, old.out_channels, 2, stride=2)
            new.load_state_dict(old.state_dict())
            setattr(decoder, name, new.to(old.weight.device, old.weight.dtype))
    old = decoder.upscale_layer_norm
    if getattr(old, "data_format", "") == "channels_first":
        new = ChannelsFirstLayerNorm(old.normalized_shape, eps=old.eps)
        new.load_state_dict(old.state_dict())
        decoder.upscale_layer_norm = new.to(old.weight.device, old.weight.dtype)


def build_encoders(
    preset_name: str,
    *,
    sources: dict[str, str] | None = None,
    random_weights: bool = False,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Encoders:
    """Build the six encoders of a preset, in eval mode with gradients off.

    ``tiny`` is always random and built in code. ``full`` loads ``from_pretrained(sources[name])``
    from local folders laid out as the hub repositories ship them (``missing_source_files`` names
    any missing file first); with ``random_weights`` it builds the same architectures from
    configs instead.
    """
    preset = get_preset(preset_name)
    if preset.name == "anisora":
        raise ValueError(
            "the anisora preset has no shared encoders: its six released models load with "
            "scoring.anime_reward.anisora.reward.AnisoraReward.from_release"
        )
    if preset.name == "tiny" or random_weights:
        configs = _tiny_configs() if preset.name == "tiny" else _full_configs()
        # A fixed seed makes random encoders the same in every process, so a saved head still fits them;
        # tiny is always initialised on the CPU so it is also the same on every device.
        init_device = torch.device("cpu" if preset.name == "tiny" else device)
        cuda = [init_device.index or 0] if init_device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda), init_device:
            torch.manual_seed(RANDOM_ENCODER_SEED)
            models = {name: _MODEL_CLASSES[name](configs[name]) for name in ENCODER_NAMES}
        tokenizers = _hash_tokenizers(configs)
        used_sources = {name: f"{preset.name}:random" for name in ENCODER_NAMES}
    else:
        from transformers import AutoTokenizer

        used_sources = {**FULL_SOURCES, **(sources or {})}
        problems = missing_source_files(used_sources)
        if problems:
            raise ValueError("full AnimeReward encoders: " + "; ".join(problems))
        local = {"local_files_only": True}
        models = {
            name: load_idefics2_vision(used_sources[name])
            if name == "idefics2"
            else _MODEL_CLASSES[name].from_pretrained(
                used_sources[name], use_safetensors=True, **local
            )
            for name in ENCODER_NAMES
        }
        tokenizers = {
            "clip_tokenizer": PretrainedTokenizer(
                AutoTokenizer.from_pretrained(used_sources["clip"], **local), 77
            ),
            "xclip_tokenizer": PretrainedTokenizer(
                AutoTokenizer.from_pretrained(used_sources["xclip"], **local), 77
            ),
            "grounding_dino_tokenizer": PretrainedTokenizer(
                AutoTokenizer.from_pretrained(used_sources["grounding_dino"], **local), 256
            ),
        }
    speed_up_sam_decoder(models["sam"])
    for model in models.values():
        model.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return Encoders(preset=preset, sources=used_sources, **models, **tokenizers)
