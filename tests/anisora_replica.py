"""Replicas of Bilibili's released AnimeReward folder (reward/ of bilibili/Index-anisora with
HF IndexTeam/Index-anisora's weights): every file the anisora preset reads, at its released path,
with the released state-dict key names and small widths, random weights. Tests load these through
the production code (``AnisoraReward.from_release``)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    BertTokenizer,
    GroundingDinoForObjectDetection,
    GroundingDinoImageProcessor,
    Idefics2Config,
    Idefics2ImageProcessor,
    PreTrainedTokenizerFast,
    Sam2VideoConfig,
    Sam2VideoModel,
)
from transformers.models.idefics2.modeling_idefics2 import Idefics2Model

from scoring.anime_reward.anisora import layout
from scoring.anime_reward.presets import _tiny_configs

WIDTH = 64  # one 64-wide attention head, as the released models' heads are 64 wide
PATCH = 32  # 224 px inputs (the release's size) in 7 x 7 patches
WORDS = (
    "a the of and in to is character video frames quality prompt girl boy cat running jumps "
    "stands waves red blue sky city forest night day walks"
).split()


def _g(*shape, scale=0.05):
    return torch.randn(*shape) * scale


def _ln(prefix: str, width: int) -> dict:
    return {f"{prefix}.weight": 1 + _g(width), f"{prefix}.bias": _g(width)}


def _linear(prefix: str, out: int, inp: int) -> dict:
    return {f"{prefix}.weight": _g(out, inp), f"{prefix}.bias": _g(out)}


def blip_vit(prefix: str, *, layers: int = 2, width: int = WIDTH) -> dict:
    """BLIP's timm-style ViT at 224 px (keys as ``create_vit`` names them)."""
    tokens = (224 // PATCH) ** 2 + 1
    state = {
        f"{prefix}cls_token": _g(1, 1, width),
        f"{prefix}pos_embed": _g(1, tokens, width),
        f"{prefix}patch_embed.proj.weight": _g(width, 3, PATCH, PATCH, scale=0.02),
        f"{prefix}patch_embed.proj.bias": _g(width),
        **_ln(f"{prefix}norm", width),
    }
    for i in range(layers):
        b = f"{prefix}blocks.{i}."
        state.update(_ln(b + "norm1", width))
        state.update(_linear(b + "attn.qkv", 3 * width, width))
        state.update(_linear(b + "attn.proj", width, width))
        state.update(_ln(b + "norm2", width))
        state.update(_linear(b + "mlp.fc1", 4 * width, width))
        state.update(_linear(b + "mlp.fc2", width, 4 * width))
    return state


def bert_vocab() -> list[str]:
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *WORDS]


def blip_text(prefix: str, vocab: int, *, layers: int = 1, width: int = WIDTH) -> dict:
    """BLIP's med BertModel (add_cross_attention, no pooler), as ``text_encoder.*``."""
    positions = 64
    state = {
        f"{prefix}embeddings.word_embeddings.weight": _g(vocab, width),
        f"{prefix}embeddings.position_embeddings.weight": _g(positions, width),
        f"{prefix}embeddings.position_ids": torch.arange(positions)[None],
        **_ln(f"{prefix}embeddings.LayerNorm", width),
    }
    for i in range(layers):
        b = f"{prefix}encoder.layer.{i}."
        for part in ("attention", "crossattention"):
            for name in ("query", "key", "value"):
                state.update(_linear(f"{b}{part}.self.{name}", width, width))
            state.update(_linear(f"{b}{part}.output.dense", width, width))
            state.update(_ln(f"{b}{part}.output.LayerNorm", width))
        state.update(_linear(b + "intermediate.dense", 4 * width, width))
        state.update(_linear(b + "output.dense", width, 4 * width))
        state.update(_ln(b + "output.LayerNorm", width))
    return state


def _resblocks(prefix: str, layers: int, width: int) -> dict:
    state = {}
    for i in range(layers):
        b = f"{prefix}resblocks.{i}."
        state[b + "attn.in_proj_weight"] = _g(3 * width, width)
        state[b + "attn.in_proj_bias"] = _g(3 * width)
        state.update(_linear(b + "attn.out_proj", width, width))
        state.update(_ln(b + "ln_1", width))
        state.update(_linear(b + "mlp.c_fc", 4 * width, width))
        state.update(_linear(b + "mlp.c_proj", width, 4 * width))
        state.update(_ln(b + "ln_2", width))
    return state


def bpe_merges() -> list[str]:
    return ["t h", "th e</w>", "a n", "an d</w>", "i n", "o n", "e r", "r u", "s t"]


def clip_vocab_size() -> int:
    return 512 + len(bpe_merges()) + 2


def actionclip(*, width: int = WIDTH) -> dict:
    """ActionCLIP's mmengine state dict: ``clip.*`` (OpenAI CLIP ViT-B/16 layout) + ``adapter.*``."""
    vocab = clip_vocab_size()
    grid = 224 // PATCH
    state = {
        "clip.positional_embedding": _g(77, width),
        "clip.text_projection": _g(width, width),
        "clip.logit_scale": torch.tensor(4.6052),
        "clip.visual.class_embedding": _g(width),
        "clip.visual.positional_embedding": _g(grid * grid + 1, width),
        "clip.visual.proj": _g(width, width),
        "clip.visual.conv1.weight": _g(width, 3, PATCH, PATCH, scale=0.02),
        **_ln("clip.visual.ln_pre", width),
        **_ln("clip.visual.ln_post", width),
        **_resblocks("clip.visual.transformer.", 2, width),
        "clip.token_embedding.weight": _g(vocab, width),
        **_resblocks("clip.transformer.", 2, width),
        **_ln("clip.ln_final", width),
        "adapter.frame_position_embeddings.weight": _g(8, width),
        **_resblocks("adapter.transformer.", 1, width),
    }
    return state


def _idefics2_tokenizer() -> PreTrainedTokenizerFast:
    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    extra = ["<fake_token_around_image>", "<image>", "<end_of_utterance>"]
    words = sorted(set(WORDS) | set(".,:\"'()/-0123456789"))
    vocab = {t: i for i, t in enumerate(specials + words + extra)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        additional_special_tokens=extra,
    )


def idefics2_regressor(folder: Path, *, seed: int, shards: int = 1) -> None:
    """A Mantis Idefics2ForSequenceClassification checkpoint-final folder: config, weights
    (``model.*`` + ``score.*``; sharded with an index when ``shards`` > 1), processor files."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _idefics2_tokenizer()
    config = Idefics2Config(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        perceiver_config=dict(
            hidden_act="silu",
            resampler_n_latents=4,
            resampler_depth=1,
            resampler_n_heads=2,
            resampler_head_dim=8,
            num_key_value_heads=1,
        ),
        text_config=dict(
            model_type="mistral",
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            pad_token_id=tokenizer.pad_token_id,
        ),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        num_labels=1,
        problem_type="regression",
        architectures=["Idefics2ForSequenceClassification"],
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Idefics2Model(config)
    state = {f"model.{k}": v.contiguous() for k, v in model.state_dict().items()}
    # a score head that puts the 0-100 output in range: bias 50
    state["score.weight"] = _g(1, 32, scale=2.0)
    state["score.bias"] = torch.tensor([50.0])
    config.save_pretrained(folder)
    if shards == 1:
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        keys = sorted(state)
        weight_map = {}
        for i in range(shards):
            name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = {k: state[k] for k in keys[i::shards]}
            save_file(part, str(folder / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, name))
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map})
        )
    # as the 2024 folders ship it: preprocessor_config.json, tokenizer files, processor_config.json
    Idefics2ImageProcessor(
        do_image_splitting=False, size={"shortest_edge": 32, "longest_edge": 64}
    ).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "processor_config.json").write_text(
        json.dumps({"image_seq_len": 4, "processor_class": "Idefics2Processor"})
    )


def grounding_dino(folder: Path) -> None:
    """grouding-dino-base as its HF folder (tiny widths; BERT ids 101/102/1012 for [CLS]/[SEP]/.)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = _tiny_configs()["grounding_dino"]
    torch.manual_seed(3)
    GroundingDinoForObjectDetection(config).save_pretrained(folder)
    vocab = [f"[unused{i}]" for i in range(1200)]
    vocab[0], vocab[100], vocab[101], vocab[102], vocab[103] = (
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
    )
    vocab[1012], vocab[1100] = ".", "character"
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    image_processor.save_pretrained(folder)
    _set_processor_class(folder, "GroundingDinoProcessor")


SAM2_SIZE = 64  # the replica's input side (the release: 1024)


def sam2(folder: Path) -> None:
    """A facebook/sam2.1-hiera-base-plus folder as transformers ships it, at tiny widths and
    depths (64 px input): ``Sam2VideoConfig`` + weights through ``save_pretrained``; the
    processor files written as the hub folder has them (``Sam2VideoProcessor`` itself needs
    torchvision, which is not installed)."""
    folder.mkdir(parents=True, exist_ok=True)
    side = SAM2_SIZE
    config = Sam2VideoConfig(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam2_hiera_det_model",
                hidden_size=16,
                image_size=[side, side],
                blocks_per_stage=[1, 2, 2, 1],
                embed_dim_per_stage=[16, 32, 64, 128],
                num_attention_heads_per_stage=[1, 1, 1, 1],
                window_size_per_stage=[4, 4, 4, 2],
                global_attention_blocks=[4],
                window_positional_embedding_background_size=[2, 2],
            ),
            backbone_channel_list=[128, 64, 32, 16],
            backbone_feature_sizes=[[side // 4] * 2, [side // 8] * 2, [side // 16] * 2],
            fpn_hidden_size=128,
        ),
        prompt_encoder_config=dict(
            hidden_size=128, image_size=side, patch_size=16, mask_input_channels=4
        ),
        mask_decoder_config=dict(
            hidden_size=128, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32
        ),
        image_size=side,
        num_maskmem=3,
        memory_attention_hidden_size=128,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64,
        memory_attention_rope_feat_sizes=[side // 16, side // 16],
        memory_encoder_hidden_size=128,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128,
        memory_fuser_intermediate_dim=64,
        max_object_pointers_in_encoder=4,
    )
    torch.manual_seed(4)
    Sam2VideoModel(config).save_pretrained(folder)
    common = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "processor_class": "Sam2VideoProcessor",
        "resample": 2,
        "rescale_factor": 1 / 255,
        "size": {"height": side, "width": side},
    }
    image = {**common, "image_processor_type": "Sam2ImageProcessorFast"}
    image["mask_size"] = {"height": side // 4, "width": side // 4}
    video = {**common, "video_processor_type": "Sam2VideoVideoProcessor"}
    (folder / "preprocessor_config.json").write_text(json.dumps(image, indent=2))
    (folder / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    (folder / "processor_config.json").write_text(
        json.dumps({"point_pad_value": -10, "processor_class": "Sam2VideoProcessor"}, indent=2)
    )


def _set_processor_class(folder: Path, name: str) -> None:
    """preprocessor_config.json names its processor, as the hub folders' files do."""
    path = folder / "preprocessor_config.json"
    config = json.loads(path.read_text())
    config["processor_class"] = name
    path.write_text(json.dumps(config, indent=2))


def write_release(root: Path, *, seed: int = 0) -> Path:
    """Every released file the anisora preset reads, under ``root`` (the release's reward/)."""
    torch.manual_seed(seed)
    weights = root / "weights"
    weights.mkdir(parents=True, exist_ok=True)
    idefics2_regressor(root / layout.QUALITY_DIR, seed=seed + 1)
    idefics2_regressor(root / layout.SMOOTH_DIR, seed=seed + 2, shards=2)
    vocab = bert_vocab()
    bert = root / layout.BERT_DIR
    bert.mkdir(parents=True, exist_ok=True)
    (bert / "vocab.txt").write_text("\n".join(vocab) + "\n")
    heads = {
        **_linear("img_proj", WIDTH, WIDTH),
        **_linear("img_key_proj", WIDTH, WIDTH),
        **_linear("head_diff", 1, 2 * WIDTH),
    }
    for rel, extra in (
        (layout.IMAGE_CONSISTENCY_CKPT, {}),
        (layout.TEXT_CONSISTENCY_CKPT, blip_text("text_encoder.", len(vocab) + 2)),
    ):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {**blip_vit("visual_encoder."), **heads, **extra}
        torch.save({"model": state, "optimizer": {}, "epoch": 5}, path)
    torch.save({"meta": {"epoch": 10}, "state_dict": actionclip()}, root / layout.MOTION_CKPT)
    with gzip.open(root / layout.CLIP_BPE, "wt", encoding="utf-8") as f:
        f.write("\n".join(['"bpe_simple_vocab_16e6.txt#version: 0.2', *bpe_merges()]) + "\n")
    character = root / layout.CHARACTER_CKPT
    character.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model": {**blip_vit("visual_encoder."), **_linear("vision_proj", 32, WIDTH)}},
        character,
    )
    grounding_dino(root / layout.GROUNDING_DINO_DIR)
    return root
