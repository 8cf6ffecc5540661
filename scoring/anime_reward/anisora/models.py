"""The released AnimeReward architectures as transformers modules, sized from their checkpoints.

Each builder reads the sizes off the released tensors (widths, depths, patch and image sizes, as
the release's own loaders and OpenAI's ``build_model`` do; heads are width / 64 in every released
transformer), builds the transformers classes, and loads the tensors strictly by name.

    BlipConsistency   BLIP ViT-B/16 (``BlipVisionModel``) per frame, CLS averaged over frames ->
                      ``img_proj``; the key image's CLS (image model) or the prompt's BERT CLS
                      (``BlipTextModel``, text model) -> ``img_key_proj``; ``head_diff`` on the
                      pair, sigmoid
    ActionClip        CLIP ViT-B/16 (``CLIPModel``) frame embeddings + a temporal transformer
                      (``CLIPEncoder``: ActionCLIP's adapter) with frame position embeddings,
                      residual, mean over frames; text through CLIP's text tower
    Idefics2Regressor ``Idefics2Model`` + a linear ``score`` on the last token (Mantis'
                      ``Idefics2ForSequenceClassification``)
    CharacterRecogniser  BLIP ViT-L/16 + ``vision_proj`` (the release's IP recogniser)
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from transformers import BlipTextConfig, BlipVisionConfig, CLIPConfig, CLIPModel, Idefics2Config
from transformers.models.blip.modeling_blip import BlipVisionModel
from transformers.models.blip.modeling_blip_text import BlipTextModel
from transformers.models.clip.configuration_clip import CLIPTextConfig
from transformers.models.clip.modeling_clip import CLIPEncoder
from transformers.models.idefics2.modeling_idefics2 import Idefics2Model

from .checkpoints import (
    CheckpointKeyError,
    _take,
    adapter_released_name,
    adapter_to_hf,
    blip_vit_to_hf,
    clip_released_name,
    load_strict,
    openai_clip_to_hf,
    vit_released_name,
)
from .layout import ReleaseLayoutError, _weight_files

log = logging.getLogger(__name__)

HEAD_WIDTH = 64  # every released transformer has 64-wide attention heads
# keys the release's non-strict loaders skip (BLIP pretraining parts; HF keeps position_ids unsaved)
IGNORED_BLIP_KEYS = re.compile(
    r"^(text_encoder_m\.|visual_encoder_m\.|vision_proj_m\.|text_proj_m\.|text_proj\.|itm_head\.|"
    r"temp$|image_queue$|text_queue$|idx_queue$|ptr_queue$|queue_ptr$|"
    r"text_encoder\.embeddings\.position_ids$)"
)


def _layers(state: dict, prefix: str) -> int:
    found = {int(k[len(prefix) :].split(".", 1)[0]) for k in state if k.startswith(prefix)}
    return max(found) + 1 if found else 0


def _shape(state: dict, key: str, source: str) -> tuple[int, ...]:
    if key not in state:
        raise CheckpointKeyError(f"{source}: checkpoint lacks {key!r}")
    return tuple(state[key].shape)


def _drop_ignored(state: dict) -> dict:
    """The release's loaders are non-strict; drop exactly the pretraining leftovers they skip."""
    return {k: v for k, v in state.items() if not IGNORED_BLIP_KEYS.match(k)}


def blip_vision_config(vit: dict, source: str, **extra) -> BlipVisionConfig:
    """BlipVisionConfig of a BLIP ViT (timm layout) from its tensors."""
    width, _, patch, _ = _shape(vit, "patch_embed.proj.weight", source)
    tokens = _shape(vit, "pos_embed", source)[1]
    grid = round((tokens - 1) ** 0.5)
    return BlipVisionConfig(
        hidden_size=width,
        intermediate_size=_shape(vit, "blocks.0.mlp.fc1.weight", source)[0],
        num_hidden_layers=_layers(vit, "blocks."),
        num_attention_heads=max(1, width // HEAD_WIDTH),
        image_size=grid * patch,
        patch_size=patch,
        layer_norm_eps=1e-6,  # BLIP's ViT: partial(nn.LayerNorm, eps=1e-6)
        hidden_act="gelu",
        **extra,
    )


def _load_with_vit(model: nn.Module, vit: dict, state: dict, source: str) -> nn.Module:
    """Load a model holding a BLIP ViT as ``visual_encoder``: the ViT's timm-layout tensors
    mapped, the rest (heads, BERT) by their own names; strict, errors in released names."""
    hf = {f"visual_encoder.{k}": v for k, v in blip_vit_to_hf(vit, source).items()}
    hf.update({k: v for k, v in state.items() if not k.startswith("visual_encoder.")})
    load_strict(model, hf, source, _outer_released_name)
    return model.eval()


def _outer_released_name(key: str) -> str:
    """A key of a model holding a BLIP ViT as ``visual_encoder`` -> the released name."""
    if key.startswith("visual_encoder."):
        return vit_released_name("visual_encoder.")(key.removeprefix("visual_encoder."))
    return key


def _cls(model: BlipVisionModel, pixels: torch.Tensor) -> torch.Tensor:
    return model(pixel_values=pixels).last_hidden_state[:, 0]


class BlipConsistency(nn.Module):
    """Image-video (``text_encoder`` None) or text-video consistency, as released."""

    def __init__(self, visual_encoder: BlipVisionModel, text_encoder: BlipTextModel | None):
        super().__init__()
        self.visual_encoder = visual_encoder
        self.text_encoder = text_encoder
        width = visual_encoder.config.hidden_size
        key_width = text_encoder.config.hidden_size if text_encoder is not None else width
        self.img_proj = nn.Linear(width, width)
        self.img_key_proj = nn.Linear(key_width, width)
        self.head_diff = nn.Linear(2 * width, 1)

    @classmethod
    def from_release(cls, state: dict, source: str, *, text: bool) -> BlipConsistency:
        state = _drop_ignored(state)
        vit = _take(state, "visual_encoder.", source)
        text_encoder = None
        if text:
            bert = _take(state, "text_encoder.", source)
            vocab, width = _shape(bert, "embeddings.word_embeddings.weight", source)
            cross = "encoder.layer.0.crossattention.self.key.weight"
            config = BlipTextConfig(
                vocab_size=vocab,
                hidden_size=width,
                intermediate_size=_shape(bert, "encoder.layer.0.intermediate.dense.weight", source)[
                    0
                ],
                num_hidden_layers=_layers(bert, "encoder.layer."),
                num_attention_heads=max(1, width // HEAD_WIDTH),
                max_position_embeddings=_shape(
                    bert, "embeddings.position_embeddings.weight", source
                )[0],
                encoder_hidden_size=_shape(bert, cross, source)[1] if cross in bert else width,
                layer_norm_eps=1e-12,
                hidden_act="gelu",
                pad_token_id=0,
                bos_token_id=None,
                sep_token_id=None,
                eos_token_id=None,
            )
            text_encoder = BlipTextModel(config, add_pooling_layer=False)
        model = cls(BlipVisionModel(blip_vision_config(vit, source)), text_encoder)
        return _load_with_vit(model, vit, state, source)

    def video_embedding(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, 3, 224, 224) normalised frames -> (D,): CLS of the frames' mean token sequence."""
        return _cls(self.visual_encoder, frames).mean(0)

    def score(self, frames: torch.Tensor, key: torch.Tensor | dict) -> torch.Tensor:
        """Sigmoid of ``head_diff``: ``key`` is the key image (1, 3, 224, 224) or the prompt's
        tokens (``input_ids``, ``attention_mask`` of one prompt)."""
        video = self.img_proj(self.video_embedding(frames)[None])
        if self.text_encoder is None:
            other = _cls(self.visual_encoder, key)
        else:
            other = self.text_encoder(**key).last_hidden_state[:, 0]
        other = self.img_key_proj(other)
        return torch.sigmoid(self.head_diff(torch.cat([video, other], -1)))[:, 0]


class TemporalAdapter(nn.Module):
    """ActionCLIP's adapter: frame position embeddings, a transformer over frames, residual, mean."""

    def __init__(self, segments: int, width: int, layers: int, heads: int):
        super().__init__()
        self.frame_position_embeddings = nn.Embedding(segments, width)
        config = CLIPTextConfig(
            hidden_size=width,
            intermediate_size=4 * width,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            hidden_act="quick_gelu",
            attention_dropout=0.0,
        )
        # A standalone encoder gets no attention dispatch from from_pretrained: name it (eager,
        # the plain softmax(QK^T)V of the release's nn.MultiheadAttention) instead of leaving
        # transformers to warn that it is unset on every load.
        config._attn_implementation = "eager"
        self.encoder = CLIPEncoder(config)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, D) frame embeddings -> (B, D)."""
        positions = torch.arange(frames.shape[1], device=frames.device)
        x = frames + self.frame_position_embeddings(positions)[None]
        x = self.encoder(inputs_embeds=x).last_hidden_state
        return (x.to(frames.dtype) + frames).mean(1)


class ActionClip(nn.Module):
    """CLIP ViT-B/16 + the temporal adapter, as ActionCLIP's ``encode_video`` / ``encode_text``."""

    def __init__(self, clip: CLIPModel, adapter: TemporalAdapter):
        super().__init__()
        self.clip, self.adapter = clip, adapter

    @classmethod
    def from_release(cls, state: dict, source: str) -> ActionClip:
        clip_state = _take(state, "clip.", source)
        adapter_state = _take(state, "adapter.", source)
        width, _, patch, _ = _shape(clip_state, "visual.conv1.weight", source)
        grid = round((_shape(clip_state, "visual.positional_embedding", source)[0] - 1) ** 0.5)
        embed_dim = _shape(clip_state, "text_projection", source)[1]
        text_width = _shape(clip_state, "ln_final.weight", source)[0]
        vocab = _shape(clip_state, "token_embedding.weight", source)[0]
        config = CLIPConfig(
            text_config=dict(
                vocab_size=vocab,
                hidden_size=text_width,
                intermediate_size=4 * text_width,
                num_hidden_layers=_layers(clip_state, "transformer.resblocks."),
                num_attention_heads=max(1, text_width // HEAD_WIDTH),
                max_position_embeddings=_shape(clip_state, "positional_embedding", source)[0],
                hidden_act="quick_gelu",
                # eos_token_id 2: pool at the argmax token id (OpenAI's end-of-text is the largest)
                bos_token_id=vocab - 2,
                eos_token_id=2,
                pad_token_id=vocab - 1,
            ),
            vision_config=dict(
                hidden_size=width,
                intermediate_size=4 * width,
                num_hidden_layers=_layers(clip_state, "visual.transformer.resblocks."),
                num_attention_heads=max(1, width // HEAD_WIDTH),
                image_size=grid * patch,
                patch_size=patch,
                hidden_act="quick_gelu",
            ),
            projection_dim=embed_dim,
        )
        clip = CLIPModel(config)
        load_strict(clip, openai_clip_to_hf(clip_state), source, clip_released_name("clip."))
        segments = _shape(adapter_state, "frame_position_embeddings.weight", source)[0]
        adapter = TemporalAdapter(
            segments,
            embed_dim,
            _layers(adapter_state, "transformer.resblocks."),
            max(1, text_width // HEAD_WIDTH),  # as the release: heads from the text width
        )
        load_strict(
            adapter, adapter_to_hf(adapter_state), source, adapter_released_name("adapter.")
        )
        unknown = [k for k in state if not k.startswith(("clip.", "adapter."))]
        if unknown:
            raise CheckpointKeyError(
                f"{source}: checkpoint has {len(unknown)} tensor(s) the model does not, "
                f"first {unknown[0]!r}"
            )
        return cls(clip, adapter).eval()

    @property
    def frames(self) -> int:
        return self.adapter.frame_position_embeddings.num_embeddings

    def encode_video(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, T, 3, 224, 224) normalised frames -> (B, D) video features (not normalised)."""
        batch, length = frames.shape[:2]
        images = self.clip.get_image_features(pixel_values=frames.flatten(0, 1))
        images = getattr(images, "pooler_output", images)
        return self.adapter(images.view(batch, length, -1))

    def encode_text(self, tokens: dict) -> torch.Tensor:
        text = self.clip.get_text_features(**tokens)
        return getattr(text, "pooler_output", text)


class CharacterRecogniser(nn.Module):
    """BLIP ViT (ViT-L/16 in the release) + ``vision_proj``: unnormalised identity embeddings."""

    def __init__(self, visual_encoder: BlipVisionModel, embed_dim: int):
        super().__init__()
        self.visual_encoder = visual_encoder
        self.vision_proj = nn.Linear(visual_encoder.config.hidden_size, embed_dim)

    @classmethod
    def from_release(cls, state: dict, source: str) -> CharacterRecogniser:
        state = _drop_ignored(state)
        vit = _take(state, "visual_encoder.", source)
        embed_dim = _shape(state, "vision_proj.weight", source)[0]
        model = cls(BlipVisionModel(blip_vision_config(vit, source)), embed_dim)
        return _load_with_vit(model, vit, state, source)

    def embed(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vision_proj(_cls(self.visual_encoder, pixels))


class _Idefics2Backbone(Idefics2Model):
    """``Idefics2Model`` read from a released regressor folder, whose shards also hold the
    ``score`` head: those tensors are read apart (``Idefics2Regressor.from_folder``), so the load
    report does not list them as unexpected on every load."""

    _keys_to_ignore_on_load_unexpected = [r"^score\."]


class Idefics2Regressor(nn.Module):
    """Mantis' ``Idefics2ForSequenceClassification``: ``model`` (Idefics2Model) + ``score``."""

    def __init__(self, config: Idefics2Config):
        super().__init__()
        self.config = config
        self.model = Idefics2Model(config)
        self.score = nn.Linear(config.text_config.hidden_size, config.num_labels)

    @classmethod
    def from_folder(cls, folder: str | Path, *, dtype: torch.dtype = torch.float32):
        """The regressor from its released folder: ``Idefics2Model.from_pretrained`` reads the
        ``model.*`` tensors (prefix stripped), the ``score`` head is read from the same shards.
        Any tensor that is neither, or one the model lacks, is an error naming it."""
        folder = Path(folder)
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise ReleaseLayoutError(f"{folder}: config.json missing")
        raw = json.loads(config_file.read_text())
        if raw.get("model_type") != "idefics2":
            raise ReleaseLayoutError(
                f"{config_file}: model_type {raw.get('model_type')!r}, expected 'idefics2'"
            )
        score = {}
        for shard in _weight_files(folder):
            if not shard.is_file():
                raise ReleaseLayoutError(f"{folder}: weight file {shard.name} missing")
            with safe_open(str(shard), framework="pt") as f:
                for name in f.keys():
                    if name.startswith("score."):
                        score[name.removeprefix("score.")] = f.get_tensor(name)
        if "weight" not in score:
            raise CheckpointKeyError(f"{folder}: checkpoint lacks 'score.weight'")
        model, info = _Idefics2Backbone.from_pretrained(
            str(folder), dtype=dtype, output_loading_info=True, local_files_only=True
        )
        for kind, keys in (
            ("lacks", info["missing_keys"]),
            ("has unexpected", info["unexpected_keys"]),  # score.* is read apart, above
        ):
            if keys:
                raise CheckpointKeyError(
                    f"{folder}: checkpoint {kind} {len(keys)} tensor(s), first {sorted(keys)[0]!r}"
                )
        if info.get("mismatched_keys"):
            raise CheckpointKeyError(f"{folder}: shape mismatch in {info['mismatched_keys'][0]}")
        regressor = cls.__new__(cls)
        nn.Module.__init__(regressor)
        regressor.config, regressor.model = model.config, model
        regressor.score = nn.Linear(*score["weight"].shape[::-1], bias="bias" in score)
        load_strict(regressor.score, score, f"{folder} [score]")
        return regressor.to(dtype).eval()

    def forward(self, **inputs) -> torch.Tensor:
        """Logits at the last token that is not padding: (B, num_labels)."""
        hidden = self.model(**inputs).last_hidden_state
        logits = self.score(hidden)
        input_ids = inputs["input_ids"]
        pad = self.config.pad_token_id
        if pad is None:
            pad = getattr(self.config.text_config, "pad_token_id", None)
        if pad is None:
            last = torch.full((len(input_ids),), -1, device=logits.device)
        else:  # first padding position - 1, modulo length (the release's rule)
            last = (torch.eq(input_ids, pad).int().argmax(-1) - 1) % input_ids.shape[-1]
        return logits[torch.arange(len(input_ids), device=logits.device), last]
