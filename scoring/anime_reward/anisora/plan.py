"""The released AnimeReward at full size, planned without weights: each model built on the
``meta`` device from the released architectures' config numbers (nothing downloaded, no memory),
its parameters counted, its bf16 weight memory and its compute per clip worked out.

Config numbers, as the released folders' ``config.json`` files and the release's model code have
them: Mantis-8B-Idefics2 = Idefics2-8B (SigLIP-so400m/14 vision tower, 64-latent perceiver,
Mistral-7B with 3 added tokens) + a 4096 -> 1 ``score``; BLIP ViT-B/16 at 224 px (+ BERT-base
with cross-attention for text); ActionCLIP = CLIP ViT-B/16 + a 6-layer temporal transformer over
8 frames; the IP recogniser = BLIP ViT-L/16 at 224 px + a 256-wide ``vision_proj``;
GroundingDINO-base (Swin-B, 384 px pretraining, BERT-base); SAM 2.1 Hiera-B+.

Compute per clip (``FlopCounterMode`` on the meta models, so attention is counted) at the
platform's 480 x 720 clips: the regressors see 24 frames at 480 x 720 (their processor keeps
that size: shortest edge >= 378, longest <= 980), 34 x 51 patches each, and 24 x 64 perceiver
latents + ~170 prompt tokens in the language model; BLIP and ActionCLIP 24 and 8 frames at 224;
the recogniser 8 crops per character (two characters assumed) + 2 gallery images; GroundingDINO
one condition image at 800 x 1200 (Swin backbone only: its encoder and decoder add a few
percent); SAM 2.1 24 frames at 1024 (image encoder only; memory attention and the mask decoder
add a few percent per character).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

H100_BF16_TFLOPS = 989.0  # dense bf16 peak
UTILISATION = 0.4  # the share of the peak a well-fed transformer forward reaches
CLIP_HEIGHT, CLIP_WIDTH = 480, 720
FRAMES, MOTION_FRAMES, CROPS = 24, 8, 2 * 8 + 2


@dataclass(frozen=True)
class PlannedModel:
    name: str
    params: int
    tflops_per_clip: float
    note: str

    @property
    def bf16_gib(self) -> float:
        return self.params * 2 / 2**30


def _tflops(fn) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops() / 1e12


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _meta(*shape, dtype=torch.float32) -> torch.Tensor:
    return torch.zeros(*shape, device="meta", dtype=dtype)


def mantis_idefics2_config():
    from transformers import Idefics2Config

    from ..presets import _full_configs

    return Idefics2Config(
        vision_config=_full_configs()["idefics2"].to_dict(),  # the full preset's: SigLIP-so400m
        perceiver_config=dict(
            hidden_act="silu",
            resampler_n_latents=64,
            resampler_depth=3,
            resampler_n_heads=16,
            resampler_head_dim=96,
            num_key_value_heads=4,
        ),
        text_config=dict(
            model_type="mistral",
            vocab_size=32003,
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            max_position_embeddings=32768,
            rms_norm_eps=1e-5,
        ),
        num_labels=1,
    )


def _regressor() -> PlannedModel:
    from transformers.models.idefics2.modeling_idefics2 import Idefics2Model

    model = Idefics2Model(mantis_idefics2_config())
    patches = (CLIP_HEIGHT // 14) * (CLIP_WIDTH // 14)
    vision = _tflops(lambda: model.vision_model.encoder(inputs_embeds=_meta(FRAMES, patches, 1152)))
    connector = model.connector

    def resample():  # the connector layer by layer (its mask builder reads values: not on meta)
        context = connector.modality_projection(_meta(FRAMES, patches, 1152))
        latents = _meta(FRAMES, 64, 4096)
        for layer in connector.perceiver_resampler.layers:
            latents = layer(latents, context, attention_mask=None, position_ids=None)

    latents = _tflops(resample)
    text = _tflops(lambda: model.text_model(inputs_embeds=_meta(1, FRAMES * 64 + 170, 4096)))
    return PlannedModel(
        "Mantis-8B-Idefics2 regressor (x2: smooth, quality)",
        _count(model) + 4096 + 1,
        vision + latents + text,
        f"{FRAMES} x {patches} patches, {FRAMES * 64 + 170} LM tokens",
    )


def _blip(text: bool) -> PlannedModel:
    from transformers import BlipTextConfig, BlipVisionConfig
    from transformers.models.blip.modeling_blip import BlipVisionModel
    from transformers.models.blip.modeling_blip_text import BlipTextModel

    from .models import BlipConsistency

    vit = BlipVisionModel(
        BlipVisionConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                         num_attention_heads=12, image_size=224, patch_size=16)
    )  # fmt: skip
    bert = (
        BlipTextModel(
            BlipTextConfig(
                vocab_size=30524,
                hidden_size=768,
                intermediate_size=3072,
                num_hidden_layers=12,
                num_attention_heads=12,
                encoder_hidden_size=768,
            ),
            add_pooling_layer=False,
        )  # fmt: skip
        if text
        else None
    )
    model = BlipConsistency(vit, bert)
    images = FRAMES + (0 if text else 1)
    flops = _tflops(lambda: vit(pixel_values=_meta(images, 3, 224, 224)))
    if bert is not None:  # 30 prompt tokens: 2 x params x tokens (its mask needs values)
        flops += 2 * _count(bert) * 30 / 1e12
    name = "text-video" if text else "image-video"
    return PlannedModel(f"BLIP ViT-B/16 {name} consistency", _count(model), flops, "fp32 as run")


def _actionclip() -> PlannedModel:
    from transformers import CLIPConfig, CLIPModel

    from .models import ActionClip, TemporalAdapter

    clip = CLIPModel(
        CLIPConfig(
            text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048,
                             num_hidden_layers=12, num_attention_heads=8,
                             max_position_embeddings=77, hidden_act="quick_gelu"),
            vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                               num_attention_heads=12, image_size=224, patch_size=16,
                               hidden_act="quick_gelu"),
            projection_dim=512,
        )
    )  # fmt: skip
    model = ActionClip(clip, TemporalAdapter(MOTION_FRAMES, 512, 6, 8))
    flops = _tflops(lambda: clip.vision_model(pixel_values=_meta(MOTION_FRAMES, 3, 224, 224)))
    return PlannedModel("ActionCLIP ViT-B/16 (motion)", _count(model), flops, "fp32 as run")


def _recogniser() -> PlannedModel:
    from transformers import BlipVisionConfig
    from transformers.models.blip.modeling_blip import BlipVisionModel

    from .models import CharacterRecogniser

    vit = BlipVisionModel(
        BlipVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                         num_attention_heads=16, image_size=224, patch_size=16)
    )  # fmt: skip
    model = CharacterRecogniser(vit, 256)
    flops = _tflops(lambda: vit(pixel_values=_meta(CROPS, 3, 224, 224)))
    return PlannedModel("BLIP ViT-L/16 IP recogniser", _count(model), flops, f"{CROPS} crops")


def _grounding_dino() -> PlannedModel:
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    model = GroundingDinoForObjectDetection(
        GroundingDinoConfig(
            backbone_config=dict(model_type="swin", embed_dim=128, depths=[2, 2, 18, 2],
                                 num_heads=[4, 8, 16, 32], window_size=12, image_size=384,
                                 out_indices=[2, 3, 4])
        )
    )  # fmt: skip
    backbone = model.model.backbone.conv_encoder.model
    flops = _tflops(lambda: backbone(_meta(1, 3, 800, 1200)))
    return PlannedModel("GroundingDINO-base", _count(model), flops, "Swin-B backbone counted")


def _sam2() -> PlannedModel:
    from transformers import Sam2VideoConfig, Sam2VideoModel

    model = Sam2VideoModel(
        Sam2VideoConfig(
            vision_config=dict(
                backbone_config=dict(model_type="sam2_hiera_det_model", hidden_size=112,
                                     num_attention_heads=2, blocks_per_stage=[2, 3, 16, 3],
                                     embed_dim_per_stage=[112, 224, 448, 896],
                                     num_attention_heads_per_stage=[2, 4, 8, 16],
                                     window_size_per_stage=[8, 4, 14, 7],
                                     global_attention_blocks=[12, 16, 20],
                                     window_positional_embedding_background_size=[14, 14]),
                backbone_channel_list=[896, 448, 224, 112],
            )
        )
    )  # fmt: skip
    per_frame = _tflops(lambda: model.get_image_features(_meta(1, 3, 1024, 1024)))
    return PlannedModel(
        "SAM 2.1 Hiera-B+ (tracking)", _count(model), FRAMES * per_frame, "image encoder counted"
    )


def anisora_reward_plan() -> list[PlannedModel]:
    """The seven released models (the regressor once: the two have one architecture)."""
    with torch.device("meta"):
        return [
            _regressor(),
            _blip(text=False),
            _blip(text=True),
            _actionclip(),
            _recogniser(),
            _grounding_dino(),
            _sam2(),
        ]


def plan_rows(plan: list[PlannedModel]) -> list[tuple[str, str]]:
    """Table rows: per model parameters, bf16 weights, TFLOP a clip; then the totals and the
    clips/s an H100 reaches at ``UTILISATION`` of its bf16 peak (the regressor counted twice)."""
    rows = [
        (
            f"anisora plan: {m.name}",
            f"{m.params / 1e6:8.1f} M params {m.bf16_gib:6.2f} GiB bf16 "
            f"{m.tflops_per_clip:7.2f} TFLOP/clip ({m.note})",
        )
        for m in plan
    ]
    weights = sum(m.bf16_gib * (2 if m is plan[0] else 1) for m in plan)
    tflops = sum(m.tflops_per_clip * (2 if m is plan[0] else 1) for m in plan)
    rate = H100_BF16_TFLOPS * UTILISATION / tflops
    rows.append(("anisora plan: all weights at bf16", f"{weights:6.2f} GiB"))
    rows.append(
        (
            "anisora plan: expected clips/s on one H100",
            f"{rate:6.2f} clips/s ({tflops:.1f} TFLOP/clip at {UTILISATION:.0%} of "
            f"{H100_BF16_TFLOPS:.0f} TFLOP/s)",
        )
    )
    return rows
