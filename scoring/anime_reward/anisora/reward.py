"""AnimeReward as Bilibili released it: six models read from the release folder, inputs prepared
as ``reward/reward_infer.py`` prepares them (see ``preprocess``), one clip at a time as it does.

``AnisoraReward`` has the interface scoring uses (``score_batch``, ``encoders.preset``, ``save`` /
``load``), so ``AnimeReward.load`` hands a saved ``anisora`` model to it. Batches come decoded at
the source resolution (``frame_size`` 0) with the release's frame rule.

Character consistency follows ``samurai_with_gdino_t2v.py`` and ``infer_retrieval_pretrain_v2.py``:
GroundingDINO on the condition image (centre-cropped to the frame's shape, prompt "character.",
thresholds 0.5, at most the 5 largest boxes), masks tracked through the frames, per character 8
frames where its mask is non-empty, each cropped to the mask's box, background black, padded to a
square, 224 px bilinear; the recogniser's embeddings against the gallery (dot products averaged
per gallery character), softmax over characters, mean over the 8 frames, the best character's
probability, averaged over the detected characters. The release tracks with SAMURAI (SAM 2.1 +
a Kalman filter on the box) on every frame; here SAM 2.1 (transformers' ``Sam2VideoModel`` from a
facebook/sam2.1-hiera-* folder) tracks the characters' boxes from the first sampled frame through
the sampled frames with its memory, candidate masks chosen by SAMURAI's rule (``tracking``).
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model
from PIL import Image
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn
from transformers import (
    AutoProcessor,
    BertTokenizer,
    CLIPTokenizer,
    GroundingDinoForObjectDetection,
    Sam2VideoModel,
)

from labelhub.dimensions import DIMENSION_KEYS

from ..config import get_preset
from ..frames import RewardInputs
from . import layout
from . import preprocess as pre
from .checkpoints import read_release_state
from .models import ActionClip, BlipConsistency, CharacterRecogniser, Idefics2Regressor
from .tracking import Sam2Input, load_sam2, track_boxes

log = logging.getLogger(__name__)

REWARD_CONFIG = "reward_config.json"
GALLERY_FILE = "character_gallery.safetensors"
LORA_FILE = "lora.safetensors"
PRESET = "anisora"
# LoRA on the regressors' language model (Mistral): its attention projections
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte -> printable character table (the BPE's base alphabet)."""
    keep = list(range(ord("!"), ord("~") + 1))
    keep += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = keep[:], 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars), strict=True))


def clip_tokenizer_from_bpe(path: str | Path) -> CLIPTokenizer:
    """OpenAI CLIP's tokenizer from the `clip` package's ``bpe_simple_vocab_16e6.txt.gz``: the
    vocabulary is the byte alphabet, its end-of-word forms, the merges, then the two specials,
    as ``clip.simple_tokenizer`` builds it."""
    lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1] if line.strip()]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(
        vocab={token: i for i, token in enumerate(vocab)},
        merges=merges,
    )


class _Encoders:
    """What scoring reads off a reward model: its preset (frame size 0: native) and sources."""

    def __init__(self, sources: dict):
        self.preset = get_preset(PRESET)
        self.sources = sources


def _resize_cover_crop(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``resize_for_rectangle_crop(..., reshape_mode="center")``: bicubic (antialiased, as
    torchvision on tensors) to cover (height, width), then the centre crop. (3, h, w) uint8."""
    h, w = image.shape[-2:]
    if w / h > width / height:
        size = (height, int(w * height / h))
    else:
        size = (int(h * width / w), width)
    x = F.interpolate(image[None].float(), size=size, mode="bicubic", antialias=True)
    x = x.round().clamp(0, 255).to(torch.uint8)[0]
    top, left = (x.shape[1] - height) // 2, (x.shape[2] - width) // 2
    return x[:, top : top + height, left : left + width]


def mask_crop(frame: torch.Tensor, mask: torch.Tensor) -> Image.Image:
    """The recogniser's query image: the mask's bounding box, background black, padded (black)
    to a centred square. (3, H, W) uint8 frame, (H, W) bool mask."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    crop = frame[:, y0:y1, x0:x1] * mask[y0:y1, x0:x1]
    h, w = crop.shape[1:]
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    square = torch.zeros(3, side, side, dtype=torch.uint8)
    square[:, top : top + h, left : left + w] = crop
    return pre.to_pil(square)


class AnisoraReward(nn.Module):
    """The six released models; ``score_batch`` gives rewards in [0, 1] per dimension + overall."""

    def __init__(self, parts: dict, *, release_dir: str, sources: dict):
        super().__init__()
        self.smoothness: Idefics2Regressor = parts["smoothness"]
        self.quality: Idefics2Regressor = parts["quality"]
        self.image_consistency: BlipConsistency = parts["image_consistency"]
        self.text_consistency: BlipConsistency = parts["text_consistency"]
        self.motion: ActionClip = parts["motion"]
        self.recogniser: CharacterRecogniser = parts["recogniser"]
        self.grounding_dino: GroundingDinoForObjectDetection = parts["grounding_dino"]
        self.sam2: Sam2VideoModel = parts["sam2"]
        self.sam2_input: Sam2Input = parts["sam2_input"]
        self.processors = {k: parts[k] for k in ("smooth_proc", "quality_proc", "gdino_proc")}
        self.bert_tokenizer = parts["bert_tokenizer"]
        self.clip_tokenizer = parts["clip_tokenizer"]
        self.release_dir = release_dir
        self.encoders = _Encoders(sources)
        self.gallery: dict[str, list[Image.Image]] = {}
        self.finetune = "none"
        self.tuned_heads: list[str] = []
        self.tuned_models: list[str] = []  # BLIP consistency models trained end to end (full)
        self.lora: dict[str, int] = {}  # regressor dimension -> LoRA rank (release_finetune lora)

    # --- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_release(
        cls,
        release_dir: str | Path,
        *,
        sam_source: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> AnisoraReward:
        """Load every released file (``layout``) and the SAM 2.1 folder. The Idefics2 regressors run
        in ``dtype`` (the release: bf16); the BLIP and CLIP models in fp32, as the release."""
        root = layout.check_release_dir(release_dir, sam_source=sam_source)
        text_ckpt = root / layout.TEXT_CONSISTENCY_CKPT
        image_ckpt = root / layout.IMAGE_CONSISTENCY_CKPT
        motion_ckpt = root / layout.MOTION_CKPT
        character_ckpt = root / layout.CHARACTER_CKPT
        bert = BertTokenizer.from_pretrained(str(root / layout.BERT_DIR))
        # init_tokenizer: [DEC] as bos, [ENC] as an extra special token (ids 30522, 30523)
        bert.add_special_tokens({"bos_token": "[DEC]"})
        bert.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
        gdino_dir = str(root / layout.GROUNDING_DINO_DIR)
        parts = {
            "smoothness": Idefics2Regressor.from_folder(root / layout.SMOOTH_DIR, dtype=dtype),
            "quality": Idefics2Regressor.from_folder(root / layout.QUALITY_DIR, dtype=dtype),
            "smooth_proc": AutoProcessor.from_pretrained(str(root / layout.SMOOTH_DIR)),
            "quality_proc": AutoProcessor.from_pretrained(str(root / layout.QUALITY_DIR)),
            "image_consistency": BlipConsistency.from_release(
                read_release_state(image_ckpt), str(image_ckpt), text=False
            ),
            "text_consistency": BlipConsistency.from_release(
                read_release_state(text_ckpt), str(text_ckpt), text=True
            ),
            "bert_tokenizer": bert,
            "motion": ActionClip.from_release(read_release_state(motion_ckpt), str(motion_ckpt)),
            "clip_tokenizer": clip_tokenizer_from_bpe(root / layout.CLIP_BPE),
            "recogniser": CharacterRecogniser.from_release(
                read_release_state(character_ckpt), str(character_ckpt)
            ),
            "grounding_dino": GroundingDinoForObjectDetection.from_pretrained(gdino_dir),
            "gdino_proc": AutoProcessor.from_pretrained(gdino_dir),
        }
        parts["sam2"], parts["sam2_input"] = load_sam2(sam_source)
        model = cls(parts, release_dir=str(root), sources={"sam": str(sam_source)})
        model.requires_grad_(False)
        return model.to(device).eval()

    # --- the gallery -----------------------------------------------------------------------------

    def set_gallery(self, gallery: dict) -> None:
        """character id -> reference image paths (the release's gallery: named character images)."""
        out = {}
        for character, refs in gallery.items():
            if isinstance(refs, torch.Tensor):
                images = [pre.to_pil(r) for r in (refs if refs.dim() == 4 else refs[None])]
            else:
                refs = [refs] if isinstance(refs, str | Path) else list(refs)
                if not refs:
                    raise ValueError(f"character {character!r} has no reference images")
                images = []
                for ref in refs:
                    if isinstance(ref, Image.Image):
                        images.append(ref.convert("RGB"))
                        continue
                    with Image.open(ref) as image:
                        images.append(image.convert("RGB"))
            out[str(character)] = images
        self.gallery = out

    # --- scoring ---------------------------------------------------------------------------------

    def _device(self) -> torch.device:
        return self.image_consistency.img_proj.weight.device

    def regressor(self, key: str) -> Idefics2Regressor:
        """The Idefics2 regressor of ``visual_smoothness`` or ``visual_appeal``."""
        return self.smoothness if key == "visual_smoothness" else self.quality

    def last_hidden(self, key: str, frames: torch.Tensor, prompt: str) -> torch.Tensor:
        """A regressor's last-token hidden state (its ``score`` input) for one clip, (1, D):
        the evaluation prompt and the frames through the regressor's own processor."""
        model = self.regressor(key)
        processor = self.processors["smooth_proc" if key == "visual_smoothness" else "quality_proc"]
        images = [pre.to_pil(f) for f in frames]
        inputs = processor(
            text=pre.evaluation_prompt(prompt, len(images)), images=images, return_tensors="pt"
        )
        device = model.score.weight.device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(model.score.weight.dtype)
        return model.model(**inputs).last_hidden_state[:, -1]  # batch of one, no padding

    def add_lora(self, key: str, rank: int) -> list[nn.Parameter]:
        """LoRA adapters (peft, alpha = rank, B = 0 so the model is unchanged until trained) on
        the attention projections of a regressor's language model; returns their parameters."""
        text_model = self.regressor(key).model.text_model
        config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=LORA_TARGETS)
        inject_adapter_in_model(config, text_model)
        self.lora[key] = rank
        return [p for name, p in text_model.named_parameters() if "lora_" in name]

    def lora_state(self, key: str) -> dict[str, torch.Tensor]:
        text_model = self.regressor(key).model.text_model
        return {k: v for k, v in text_model.state_dict().items() if "lora_" in k}

    @torch.inference_mode()
    def features(self, frames: torch.Tensor, condition: torch.Tensor, prompt: str) -> dict:
        """What the heads fine-tuning trains read, for one clip (frames at source resolution):
        the two regressors' last hidden states, the BLIP video and key CLS embeddings."""
        device = self._device()
        pixels = pre.key_pixels(frames).to(device)
        key_image = pre.key_pixels(condition[None]).to(device)
        tokens = self.bert_tokenizer(
            [prompt], padding="max_length", truncation=True, max_length=30, return_tensors="pt"
        ).to(device)
        ic, tc = self.image_consistency, self.text_consistency
        return {
            dim: self.last_hidden(dim, frames, prompt)[0].float().cpu()
            for dim in ("visual_smoothness", "visual_appeal")
        } | {
            "image_consistency": torch.cat(
                [
                    ic.video_embedding(pixels),
                    ic.visual_encoder(pixel_values=key_image).last_hidden_state[0, 0],
                ]
            ).cpu(),
            "text_consistency": torch.cat(
                [
                    tc.video_embedding(pixels),
                    tc.text_encoder(**tokens).last_hidden_state[0, 0],
                ]
            ).cpu(),
            "pixels": pixels,
        }

    def heads_reward(self, key: str, values: torch.Tensor) -> torch.Tensor:
        """Rewards from ``features`` values (B, F) through a dimension's head (differentiable)."""
        if key in ("visual_smoothness", "visual_appeal"):
            model = self.regressor(key)
            logits = model.score(values.to(model.score.weight))[:, 0].float()
            return logits / 100
        model = self.image_consistency if key == "image_consistency" else self.text_consistency
        width = model.img_proj.in_features
        video = model.img_proj(values[:, :width].to(model.img_proj.weight))
        other = model.img_key_proj(values[:, width:].to(model.img_proj.weight))
        return torch.sigmoid(model.head_diff(torch.cat([video, other], -1)))[:, 0]

    @torch.inference_mode()
    def motion_reward(self, pixels: torch.Tensor) -> float:
        picked = pixels[pre.motion_frame_indices(len(pixels))][None]
        video = self.motion.encode_video(picked)
        tokens = self.clip_tokenizer(list(pre.MOTION_PROMPTS), padding=True, return_tensors="pt")
        text = self.motion.encode_text({k: v.to(pixels.device) for k, v in tokens.items()})
        video = video / video.norm(dim=-1, keepdim=True)
        text = text / text.norm(dim=-1, keepdim=True)
        return float((100.0 * video @ text.T).softmax(-1)[0, 0])

    @torch.inference_mode()
    def detect(self, condition: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Character boxes (K, 4) xyxy pixels on the condition image fitted to the frame size."""
        image = pre.to_pil(_resize_cover_crop(condition, height, width))
        processor = self.processors["gdino_proc"]
        inputs = processor(images=image, text=pre.CHARACTER_PROMPT, return_tensors="pt")
        device = self.grounding_dino.device
        outputs = self.grounding_dino(**{k: v.to(device) for k, v in inputs.items()})
        found = (
            processor.post_process_grounded_object_detection(
                outputs,
                inputs["input_ids"],
                threshold=pre.BOX_THRESHOLD,
                text_threshold=pre.TEXT_THRESHOLD,
                target_sizes=[(height, width)],
            )[0]["boxes"]
            .float()
            .cpu()
        )
        if not len(found):
            # the release has no score without a detection: follow the most likely box instead
            logits = outputs.logits[0].float().sigmoid().amax(-1)
            cx, cy, w, h = outputs.pred_boxes[0, int(logits.argmax())].float().cpu().tolist()
            found = torch.tensor(
                [
                    [
                        (cx - w / 2) * width,
                        (cy - h / 2) * height,
                        (cx + w / 2) * width,
                        (cy + h / 2) * height,
                    ]
                ]
            )
        if len(found) > pre.MAX_CHARACTERS:  # filt_bboxes: the largest five
            area = (found[:, 2] - found[:, 0]) * (found[:, 3] - found[:, 1])
            found = found[area.argsort(descending=True)[: pre.MAX_CHARACTERS]]
        found[:, 0::2] = found[:, 0::2].clamp(0, width)
        found[:, 1::2] = found[:, 1::2].clamp(0, height)
        return found

    def track(self, frames: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(T, K, H, W) bool masks: SAM 2.1 tracks the boxes from the first frame (``tracking``)."""
        return track_boxes(self.sam2, self.sam2_input, frames, boxes)

    @torch.inference_mode()
    def gallery_embeddings(self, extra: list[Image.Image]) -> tuple[torch.Tensor, list[str]]:
        """Gallery images embedded (``transform_test``: 224 bicubic) and each image's character;
        with no gallery, ``extra`` (the clip's reference or detected crops) one character each."""
        names, images = [], []
        for character, refs in (self.gallery or {}).items():
            names += [character] * len(refs)
            images += refs
        if not images:
            names = [f"clip-{i}" for i in range(len(extra))]
            images = extra
        pixels = pre.normalise(images).to(self._device())
        return self.recogniser.embed(pixels).float(), names

    @torch.inference_mode()
    def character_reward(
        self, frames: torch.Tensor, condition: torch.Tensor, reference: torch.Tensor | None
    ) -> float:
        height, width = frames.shape[-2:]
        boxes = self.detect(condition, height, width)
        masks = self.track(frames, boxes)
        queries = []
        for k in range(len(boxes)):
            present = [t for t in range(len(frames)) if masks[t, k].any()]
            step = len(present) // pre.CHARACTER_FRAMES
            if step == 0:  # load_rgb_frames: fewer than 8 frames with this character
                continue
            picked = present[::step][: pre.CHARACTER_FRAMES]
            crops = [mask_crop(frames[t], masks[t, k]) for t in picked]
            pixels = pre.normalise(crops, Image.Resampling.BILINEAR).to(self._device())
            queries.append(self.recogniser.embed(pixels).float())
        if not queries:
            return 0.0
        if reference is not None:
            extra = [pre.to_pil(reference)]
        else:
            cond = _resize_cover_crop(condition, height, width)
            extra = [
                pre.to_pil(cond[:, int(y0) : int(y1) + 1, int(x0) : int(x1) + 1])
                for x0, y0, x1, y1 in boxes.tolist()
            ]
        gallery, names = self.gallery_embeddings(extra)
        distinct = list(dict.fromkeys(names))
        groups = torch.tensor([distinct.index(n) for n in names], device=gallery.device)
        scores = []
        for query in queries:  # (8, D)
            sims = query @ gallery.T  # (8, G)
            merged = torch.zeros(len(query), len(distinct), device=sims.device)
            merged.index_add_(1, groups, sims)
            merged /= torch.bincount(groups, minlength=len(distinct)).to(merged)
            scores.append(float(merged.softmax(-1).mean(0).max()))
        return sum(scores) / len(scores)

    @torch.inference_mode()
    def score_batch(self, inputs: RewardInputs) -> dict[str, torch.Tensor]:
        """Rewards in [0, 1] (the regressors' /100 clamped) per dimension and overall, (B,)."""
        if inputs.native is None:
            raise ValueError(
                "the anisora preset scores clips decoded at source resolution (size 0)"
            )
        self.eval()
        rows = []
        for clip, prompt in zip(inputs.native, inputs.prompts, strict=True):
            f = self.features(clip.frames, clip.condition, prompt)
            reward = {
                key: float(self.heads_reward(key, f[key][None].to(self._device()))[0])
                for key in (
                    "visual_smoothness",
                    "visual_appeal",
                    "image_consistency",
                    "text_consistency",
                )
            }
            for key in ("visual_smoothness", "visual_appeal"):
                reward[key] = pre.regression_reward(reward[key] * 100)
            reward["visual_motion"] = self.motion_reward(f["pixels"])
            reward["character_consistency"] = self.character_reward(
                clip.frames, clip.condition, clip.reference
            )
            rows.append(reward)
        out = {
            key: torch.tensor([min(1.0, max(0.0, r[key])) for r in rows]) for key in DIMENSION_KEYS
        }
        out["overall"] = torch.stack([out[key] for key in DIMENSION_KEYS]).mean(0)
        return out

    # --- checkpoints -----------------------------------------------------------------------------

    HEADS = {
        "visual_smoothness": ("smoothness", ("score",)),
        "visual_appeal": ("quality", ("score",)),
        "image_consistency": ("image_consistency", ("img_proj", "img_key_proj", "head_diff")),
        "text_consistency": ("text_consistency", ("img_proj", "img_key_proj", "head_diff")),
    }

    def head_modules(self, key: str) -> nn.ModuleDict:
        owner, names = self.HEADS[key]
        model = getattr(self, owner)
        return nn.ModuleDict({name: getattr(model, name) for name in names})

    def save(self, directory: str | Path, *, extra_config: dict | None = None) -> Path:
        """reward_config.json (release folder, SAM folder, gallery) + the fine-tuned heads."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for key in self.tuned_heads:
            (directory / key).mkdir(exist_ok=True)
            save_model(self.head_modules(key), str(directory / key / "head.safetensors"))
        for key in self.tuned_models:  # the whole BLIP model: ViT (+ BERT) and heads
            save_model(getattr(self, key), str(directory / key / "model.safetensors"))
        for key in self.lora:  # a few MB beside the 8B regressor, which stays as released
            (directory / key).mkdir(exist_ok=True)
            save_file(
                {k: v.contiguous() for k, v in self.lora_state(key).items()},
                str(directory / key / LORA_FILE),
            )
        if self.gallery:
            tensors = {}
            for i, images in enumerate(self.gallery.values()):
                for j, image in enumerate(images):
                    tensors[f"character_{i}_{j}"] = torch.from_numpy(
                        np.asarray(image, dtype=np.uint8).copy()
                    )
            save_file(tensors, str(directory / GALLERY_FILE))
        config = {
            "preset": PRESET,
            "release_dir": self.release_dir,
            "sources": self.encoders.sources,
            "starting_weights": {
                key: [str(Path(self.release_dir) / rel) for rel in files]
                for key, files in layout.DIMENSION_FILES.items()
            },
            "finetune": self.finetune,
            "tuned_heads": list(self.tuned_heads),
            "tuned_models": list(self.tuned_models),
            "lora": dict(self.lora),
            "gallery_characters": {c: len(images) for c, images in self.gallery.items()},
            "dimensions": list(DIMENSION_KEYS),
            **(extra_config or {}),
        }
        (directory / REWARD_CONFIG).write_text(json.dumps(config, indent=2))
        return directory

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        sources: dict | None = None,
        release_dir: str | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> AnisoraReward:
        """Rebuild from ``save``'s folder; ``release_dir`` / ``sources['sam']`` may point elsewhere."""
        directory = Path(directory)
        config = json.loads((directory / REWARD_CONFIG).read_text())
        sam = (sources or {}).get("sam") or config["sources"]["sam"]
        model = cls.from_release(
            release_dir or config["release_dir"], sam_source=sam, device=device, dtype=dtype
        )
        if config.get("gallery_characters"):
            tensors = load_file(str(directory / GALLERY_FILE))
            model.gallery = {
                c: [Image.fromarray(tensors[f"character_{i}_{j}"].numpy()) for j in range(n)]
                for i, (c, n) in enumerate(config["gallery_characters"].items())
            }
        model.finetune = config.get("finetune", "none")
        model.tuned_heads = list(config.get("tuned_heads", []))
        for key in model.tuned_heads:
            heads = model.head_modules(key)
            state = load_file(str(directory / key / "head.safetensors"))
            heads.load_state_dict(state, strict=True)
        for key, rank in config.get("lora", {}).items():
            model.add_lora(key, rank)
            state = load_file(str(directory / key / LORA_FILE))
            expected = set(model.lora_state(key))
            if set(state) != expected:
                odd = sorted(set(state) ^ expected)[0]
                raise ValueError(f"{directory / key / LORA_FILE}: LoRA tensors differ at {odd!r}")
            model.regressor(key).model.text_model.load_state_dict(state, strict=False)
        model.tuned_models = list(config.get("tuned_models", []))
        for key in model.tuned_models:
            load_model(getattr(model, key), str(directory / key / "model.safetensors"))
        return model.to(device).eval()
