"""AnimeReward: one reward model per dimension (METHOD.md), each mapping
(frames, condition image, prompt, character reference) to a reward in [0, 1].

Each dimension model splits into ``features`` (the encoders: frozen by default, so the trainer can
cache them per clip) and ``head`` (the learned part). Features are ``(values, mask)`` with values
of shape (B, L, F): L per-frame tokens (or one clip-level token) that the head scores and averages.

    smoothness   CLIP vision per frame, with the change from the previous frame -> head, averaged
    motion       X-CLIP: softmax over "large motion" vs "still" prompts (a sigmoid of the logit gap),
                 plus a residual head on frame-to-frame change, zero at init (so untrained = METHOD)
    appeal       CLIP vision on keyframes -> aesthetic head, averaged
    text         CLIP vision (clip mean) + CLIP text (prompt) -> head on the pair
    image        CLIP vision on the condition image and each frame -> head on the pair, averaged
    character    GroundingDINO finds characters on the condition image ("character."), SAM tracks
                 their masks through the frames (box of frame t-1's mask prompts frame t), BLIP
                 embeds the masked crops; similarity to the reference -> small head

Overall reward = mean of the six.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn

from labelhub.dimensions import DIMENSION_KEYS

from .frames import RewardInputs
from .presets import Encoders, ImageSpec, build_encoders

MOTION_PROMPTS = (
    "the main character makes large movements such as running, jumping, dancing or waving",
    "the main character stays still",
)
CHARACTER_PROMPT = "character."
MIN_BOX_SIDE = 1 / 8  # of the frame; keeps a degenerate detection from cropping nothing
REWARD_CONFIG = "reward_config.json"

Features = tuple[torch.Tensor, torch.Tensor]  # values (B, L, F), mask (B, L) bool


# --- small tensor helpers ------------------------------------------------------------------------


def _device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(module.parameters())
    return param.device, param.dtype


def to_pixels(images: torch.Tensor, spec: ImageSpec, module: nn.Module) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> normalised float pixels at the encoder's size, on its device."""
    device, dtype = _device_dtype(module)
    x = images.to(device, non_blocking=True).float() / 255.0
    if x.shape[-1] != spec.size:
        x = F.interpolate(
            x,
            size=(spec.size, spec.size),
            mode="bilinear",
            antialias=x.shape[-1] > spec.size,
            align_corners=False,
        )
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
    return ((x - mean) / std).to(dtype)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of (B, L) values where mask is True (0 where a row has no valid entry)."""
    weights = mask.to(values.dtype)
    return (values * weights).sum(1) / weights.sum(1).clamp(min=1)


def crop_and_resize(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop normalised xyxy boxes out of (N, 3, H, W) images and resize to (N, 3, size, size)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    theta = torch.zeros(images.shape[0], 2, 3, device=images.device, dtype=images.dtype)
    theta[:, 0, 0] = x2 - x1
    theta[:, 0, 2] = x1 + x2 - 1
    theta[:, 1, 1] = y2 - y1
    theta[:, 1, 2] = y1 + y2 - 1
    grid = F.affine_grid(theta, [images.shape[0], 3, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def widen_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Clamp normalised xyxy boxes to the frame and give them at least MIN_BOX_SIDE per side."""
    center = (boxes[..., :2] + boxes[..., 2:]) / 2
    half = ((boxes[..., 2:] - boxes[..., :2]).abs() / 2).clamp(min=MIN_BOX_SIDE / 2)
    center = torch.maximum(torch.minimum(center, 1 - half), half)
    return torch.cat([center - half, center + half], -1).clamp(0, 1)


def mask_boxes(masks: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """Normalised xyxy bounding boxes of boolean masks (..., H, W); ``previous`` where a mask is empty."""
    height, width = masks.shape[-2:]
    rows, cols = masks.any(-1), masks.any(-2)
    y1 = rows.float().argmax(-1)
    y2 = height - 1 - rows.flip(-1).float().argmax(-1)
    x1 = cols.float().argmax(-1)
    x2 = width - 1 - cols.flip(-1).float().argmax(-1)
    boxes = torch.stack([x1 / width, y1 / height, (x2 + 1) / width, (y2 + 1) / height], -1).to(
        previous.dtype
    )
    found = rows.any(-1).unsqueeze(-1)
    return torch.where(found, boxes, previous)


def _memo(memo: dict, key: tuple, compute):
    if key not in memo:
        memo[key] = compute()
    return memo[key]


# --- encoder features ----------------------------------------------------------------------------


def clip_frame_embeds(clip: nn.Module, spec: ImageSpec, frames: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, S, S) uint8 -> (B, T, D) unit CLIP image embeddings."""
    batch, length = frames.shape[:2]
    pixels = to_pixels(frames.flatten(0, 1), spec, clip)
    embeds = clip.visual_projection(clip.vision_model(pixel_values=pixels).pooler_output)
    return F.normalize(embeds.float(), dim=-1).view(batch, length, -1)


def clip_text_embeds(clip: nn.Module, tokenizer, prompts: list[str]) -> torch.Tensor:
    device, _ = _device_dtype(clip)
    tokens = {k: v.to(device) for k, v in tokenizer(prompts).items()}
    embeds = clip.text_projection(clip.text_model(**tokens).pooler_output)
    return F.normalize(embeds.float(), dim=-1)


# --- heads ---------------------------------------------------------------------------------------


class RegressionHead(nn.Module):
    """Standardise features (statistics fitted on the training set), MLP per token, masked mean."""

    def __init__(
        self, in_features: int, hidden: int, dropout: float = 0.1, zero_init: bool = False
    ):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_std", torch.ones(in_features))
        self.mlp = nn.Sequential(
            nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1)
        )
        if zero_init:
            nn.init.zeros_(self.mlp[-1].weight)
            nn.init.zeros_(self.mlp[-1].bias)

    @torch.no_grad()
    def fit_normalizer(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        valid = values[mask].float()
        if len(valid):
            self.feature_mean.copy_(valid.mean(0))
            self.feature_std.copy_(
                valid.std(0, unbiased=False).clamp(min=1e-6)
                if len(valid) > 1
                else torch.ones_like(self.feature_std)
            )

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, L, F), (B, L) -> (B,) logits."""
        x = (values.float() - self.feature_mean) / self.feature_std
        return masked_mean(self.mlp(x.to(self.mlp[0].weight.dtype)).squeeze(-1).float(), mask)


class MotionHead(nn.Module):
    """logit = scale * (large-motion logit - still logit) + bias + residual(frame change features).

    With scale 1, bias 0 and a zero residual this is X-CLIP's zero-shot probability of the
    large-motion prompt, the METHOD.md reward; training calibrates it on the human labels.
    """

    def __init__(self, in_features: int, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.bias = nn.Parameter(torch.zeros(()))
        self.residual = RegressionHead(in_features - 1, hidden, dropout, zero_init=True)

    def fit_normalizer(self, values: torch.Tensor, mask: torch.Tensor) -> None:
        self.residual.fit_normalizer(values[..., 1:], mask)

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        gap = masked_mean(values[..., 0].float(), mask)
        return self.scale * gap + self.bias + self.residual(values[..., 1:], mask)


# --- the six dimension models --------------------------------------------------------------------


class DimensionReward(nn.Module):
    """Base: ``features`` runs the encoders, ``head`` turns features into a logit, sigmoid -> [0, 1]."""

    key: str = ""
    encoder_names: tuple[str, ...] = ()  # encoders this dimension reads; fine-tuning copies them
    finetunable: bool = True

    def __init__(self, encoders: Encoders, head: nn.Module):
        super().__init__()
        self.encoders = encoders  # plain dataclass (not registered): specs and tokenizers
        for name in self.encoder_names:
            setattr(self, name, encoders.modules()[name])
        self.head = head
        self.own_encoders = False

    def features(self, inputs: RewardInputs, memo: dict) -> Features:
        raise NotImplementedError

    def reward(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(values, mask))

    def forward(self, inputs: RewardInputs) -> torch.Tensor:
        return self.reward(*self.features(inputs, {}))

    def unshare_encoders(self) -> None:
        """Give this dimension its own trainable copy of its encoders (fine-tuning)."""
        if not self.finetunable:
            raise ValueError(
                f"{self.key}: its encoders are a detect/track pipeline and stay frozen"
            )
        for name in self.encoder_names:
            setattr(self, name, copy.deepcopy(getattr(self, name)).requires_grad_(True))
        self.own_encoders = True

    def _frame_embeds(self, inputs: RewardInputs, memo: dict) -> torch.Tensor:
        return _memo(
            memo,
            (id(self.clip), "frames"),
            lambda: clip_frame_embeds(
                self.clip, self.encoders.preset.images["clip"], inputs.frames
            ),
        )


class SmoothnessReward(DimensionReward):
    key, encoder_names = "visual_smoothness", ("clip",)

    def __init__(self, encoders: Encoders, hidden: int, dropout: float):
        dim = encoders.clip.config.projection_dim
        super().__init__(encoders, RegressionHead(2 * dim, hidden, dropout))

    def features(self, inputs, memo):
        embeds = self._frame_embeds(inputs, memo)
        mask = inputs.frame_mask.to(embeds.device)
        change = embeds[:, 1:] - embeds[:, :-1]
        return torch.cat([embeds[:, 1:], change], -1), mask[:, 1:] & mask[:, :-1]


class MotionReward(DimensionReward):
    key, encoder_names = "visual_motion", ("xclip",)

    def __init__(self, encoders: Encoders, hidden: int, dropout: float):
        layers = encoders.xclip.config.vision_config.num_hidden_layers
        super().__init__(encoders, MotionHead(2 + 2 * (layers + 1), hidden, dropout))

    def features(self, inputs, memo):
        xclip = self.xclip
        device, _ = _device_dtype(xclip)
        num_frames = xclip.config.vision_config.num_frames
        # X-CLIP sees a fixed number of frames: spread them over each clip's real frames.
        counts = inputs.frame_mask.sum(1).clamp(min=1).float()
        steps = torch.linspace(0, 1, num_frames)
        index = (steps[None] * (counts[:, None] - 1)).round().long()
        picked = torch.gather(
            inputs.frames, 1, index[:, :, None, None, None].expand(-1, -1, *inputs.frames.shape[2:])
        )
        batch = picked.shape[0]
        pixels = to_pixels(picked.flatten(0, 1), self.encoders.preset.images["xclip"], xclip)
        tokens = {
            k: v.to(device) for k, v in self.encoders.xclip_tokenizer(list(MOTION_PROMPTS)).items()
        }
        out = xclip(
            pixel_values=pixels.view(batch, num_frames, *pixels.shape[1:]),
            output_hidden_states=True,
            **tokens,
        )
        logit_gap = (out.logits_per_video[:, 0] - out.logits_per_video[:, 1]).float()
        frame_embeds = F.normalize(
            xclip.visual_projection(out.vision_model_output.pooler_output).float(), dim=-1
        )
        frame_embeds = frame_embeds.view(batch, num_frames, -1)
        pooled_change = (frame_embeds[:, 1:] - frame_embeds[:, :-1]).norm(dim=-1).mean(1)
        # Local motion per layer: the patch that changes most between frames (minus the typical
        # patch, which removes global colour drift), relative to the frame's spatial contrast.
        local = []
        for hidden in out.vision_model_output.hidden_states:
            patches = hidden[:, 1:].float().view(batch, num_frames, hidden.shape[1] - 1, -1)
            change = (patches[:, 1:] - patches[:, :-1]).norm(dim=-1)  # (B, F-1, P)
            contrast = (
                (patches - patches.mean(2, keepdim=True)).norm(dim=-1).mean((1, 2)).clamp(min=1e-6)
            )
            peak = change.amax(2)
            local += [peak.mean(1) / contrast, (peak - change.median(2).values).mean(1) / contrast]
        values = torch.stack([logit_gap, pooled_change, *local], -1)
        return values[:, None], torch.ones(batch, 1, dtype=torch.bool, device=values.device)


class AppealReward(DimensionReward):
    key, encoder_names = "visual_appeal", ("clip",)

    def __init__(self, encoders: Encoders, hidden: int, dropout: float):
        super().__init__(
            encoders, RegressionHead(encoders.clip.config.projection_dim, hidden, dropout)
        )

    def features(self, inputs, memo):
        embeds = self._frame_embeds(inputs, memo)
        return embeds, inputs.frame_mask.to(embeds.device)


class TextConsistencyReward(DimensionReward):
    key, encoder_names = "text_consistency", ("clip",)

    def __init__(self, encoders: Encoders, hidden: int, dropout: float):
        dim = encoders.clip.config.projection_dim
        super().__init__(encoders, RegressionHead(3 * dim + 1, hidden, dropout))

    def features(self, inputs, memo):
        embeds = self._frame_embeds(inputs, memo)
        video = F.normalize(masked_mean_tokens(embeds, inputs.frame_mask.to(embeds.device)), dim=-1)
        text = _memo(
            memo,
            (id(self.clip), "text"),
            lambda: clip_text_embeds(self.clip, self.encoders.clip_tokenizer, inputs.prompts),
        )
        product = video * text
        values = torch.cat([video, text, product, product.sum(-1, keepdim=True)], -1)
        return values[:, None], torch.ones(len(inputs), 1, dtype=torch.bool, device=values.device)


class ImageConsistencyReward(DimensionReward):
    key, encoder_names = "image_consistency", ("clip",)

    def __init__(self, encoders: Encoders, hidden: int, dropout: float):
        dim = encoders.clip.config.projection_dim
        super().__init__(encoders, RegressionHead(2 * dim + 1, hidden, dropout))

    def features(self, inputs, memo):
        embeds = self._frame_embeds(inputs, memo)
        spec = self.encoders.preset.images["clip"]
        condition = _memo(
            memo,
            (id(self.clip), "condition"),
            lambda: clip_frame_embeds(self.clip, spec, inputs.condition[:, None])[:, 0],
        )
        product = embeds * condition[:, None]
        values = torch.cat(
            [product, (embeds - condition[:, None]).abs(), product.sum(-1, keepdim=True)], -1
        )
        return values, inputs.frame_mask.to(embeds.device)


class CharacterConsistencyReward(DimensionReward):
    key = "character_consistency"
    encoder_names = ("grounding_dino", "sam", "blip")
    finetunable = False
    num_features = 5

    def __init__(self, encoders: Encoders, hidden: int, dropout: float):
        super().__init__(encoders, RegressionHead(self.num_features, hidden, dropout))

    def features(self, inputs, memo):
        sims, first_sims, weights = self.track_and_compare(inputs)
        mask = inputs.frame_mask.to(sims.device)
        w = mask[:, :, None].float() * weights[:, None, :]  # (B, T, K)
        total = w.sum((1, 2)).clamp(min=1e-6)
        mean_sim = (sims * w).sum((1, 2)) / total
        std_sim = (((sims - mean_sim[:, None, None]) ** 2 * w).sum((1, 2)) / total).sqrt()
        min_sim = sims.masked_fill(w == 0, float("inf")).amin((1, 2))
        mean_first = (first_sims * w).sum((1, 2)) / total
        last = (mask.sum(1) - 1).clamp(min=0)
        last_sim = sims[torch.arange(len(last)), last]  # (B, K)
        drop = ((sims[:, 0] - last_sim) * weights).sum(1) / weights.sum(1).clamp(min=1e-6)
        values = torch.stack([mean_sim, min_sim, std_sim, mean_first, drop], -1)
        return values[:, None], torch.ones(len(inputs), 1, dtype=torch.bool, device=values.device)

    def detect(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GroundingDINO on the condition images: top-K character boxes (normalised xyxy) and weights."""
        preset, model = self.encoders.preset, self.grounding_dino
        device, _ = _device_dtype(model)
        tokens = {
            k: v.to(device)
            for k, v in self.encoders.grounding_dino_tokenizer(
                [CHARACTER_PROMPT] * len(condition)
            ).items()
        }
        out = model(
            pixel_values=to_pixels(condition, preset.images["grounding_dino"], model), **tokens
        )
        text_len = tokens["attention_mask"].shape[1]
        probs = (
            out.logits[..., :text_len].float().sigmoid() * tokens["attention_mask"][:, None].float()
        )
        scores = probs.amax(-1)  # (B, queries)
        top = scores.topk(min(preset.max_characters, scores.shape[1]), dim=1)
        cx, cy, w, h = torch.gather(
            out.pred_boxes.float(), 1, top.indices[..., None].expand(-1, -1, 4)
        ).unbind(-1)
        boxes = widen_boxes(torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1))
        keep = top.values >= preset.box_threshold
        keep[:, 0] = True  # always follow the most likely character
        return boxes, keep.float()

    def track_and_compare(
        self, inputs: RewardInputs
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Similarities (B, T, K) of each tracked character crop to its reference and to its first crop."""
        preset, sam = self.encoders.preset, self.sam
        detected, weights = self.detect(inputs.condition)
        batch, length, _, size, _ = inputs.frames.shape
        characters = detected.shape[1]
        sam_spec, blip_size = preset.images["sam"], preset.images["blip"].size
        embeddings = torch.cat(
            [  # the heavy part, batched over every frame of every clip
                sam.get_image_embeddings(to_pixels(chunk, sam_spec, sam))
                for chunk in inputs.frames.flatten(0, 1).split(16)
            ]
        )
        embeddings = embeddings.view(batch, length, *embeddings.shape[1:])
        device, _ = _device_dtype(sam)
        frames = inputs.frames.to(device).float() / 255.0
        boxes, crops = detected, []
        for t in range(length):  # track: frame t is prompted with the box of frame t-1's mask
            out = sam(
                image_embeddings=embeddings[:, t],
                input_boxes=(boxes * sam_spec.size).to(embeddings.dtype),
                multimask_output=False,
            )
            masks = (
                F.interpolate(
                    out.pred_masks[:, :, 0].float(),
                    size=(size, size),
                    mode="bilinear",
                    align_corners=False,
                )
                > 0
            )  # (B, K, S, S)
            boxes = widen_boxes(mask_boxes(masks, boxes))
            # Grey out the background; an empty mask (SAM lost the character) keeps the whole box.
            keep = masks | ~masks.flatten(2).any(-1)[..., None, None]
            cutout = frames[:, t, None] * keep[:, :, None] + 0.5 * ~keep[:, :, None]
            crops.append(crop_and_resize(cutout.flatten(0, 1), boxes.flatten(0, 1), blip_size))
        crop_embeds = self.embed(torch.stack(crops, 1).flatten(0, 1))  # (B*K*T, D)
        crop_embeds = crop_embeds.view(batch, characters, length, -1).transpose(
            1, 2
        )  # (B, T, K, D)

        # Reference: the character reference image when the condition has one, else the detected crop.
        condition = inputs.condition.to(device).float() / 255.0
        from_condition = self.embed(
            crop_and_resize(
                condition.repeat_interleave(characters, 0), detected.flatten(0, 1), blip_size
            )
        ).view(batch, characters, -1)
        from_reference = self.embed(
            crop_and_resize(
                inputs.reference.to(device).float() / 255.0,
                torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=device).expand(batch, -1),
                blip_size,
            )
        )[:, None].expand(-1, characters, -1)
        has_reference = inputs.has_reference.to(device)[:, None, None]
        reference = torch.where(has_reference, from_reference, from_condition)

        sims = (crop_embeds * reference[:, None]).sum(-1)
        first_sims = (crop_embeds * crop_embeds[:, :1]).sum(-1)
        return sims, first_sims, weights

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """BLIP image embeddings (unit vectors) of (N, 3, s, s) crops with values in [0, 1]."""
        blip, spec = self.blip, self.encoders.preset.images["blip"]
        device, dtype = _device_dtype(blip)
        mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
        out = []
        for chunk in crops.split(64):
            pixels = ((chunk - mean) / std).to(dtype)
            hidden = blip.vision_model(pixel_values=pixels).last_hidden_state[:, 0]
            out.append(F.normalize(blip.vision_proj(hidden).float(), dim=-1))
        return torch.cat(out)


def masked_mean_tokens(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, L, D) values, (B, L) mask -> (B, D) mean over valid tokens."""
    weights = mask.to(values.dtype)[..., None]
    return (values * weights).sum(1) / weights.sum(1).clamp(min=1)


# --- the container -------------------------------------------------------------------------------

DIMENSION_CLASSES: dict[str, type[DimensionReward]] = {
    cls.key: cls
    for cls in (
        SmoothnessReward,
        MotionReward,
        AppealReward,
        TextConsistencyReward,
        ImageConsistencyReward,
        CharacterConsistencyReward,
    )
}
assert tuple(DIMENSION_CLASSES) == DIMENSION_KEYS


class AnimeReward(nn.Module):
    """The six dimension models over shared encoders; overall reward = mean of the six."""

    def __init__(self, encoders: Encoders, *, head_hidden: int | None = None, dropout: float = 0.1):
        super().__init__()
        self.encoders = encoders
        self.head_hidden = head_hidden or encoders.preset.head_hidden
        self.dropout = dropout
        self.dimensions = nn.ModuleDict(
            {
                key: cls(encoders, self.head_hidden, dropout)
                for key, cls in DIMENSION_CLASSES.items()
            }
        )

    @classmethod
    def from_preset(
        cls,
        preset: str,
        *,
        sources: dict[str, str] | None = None,
        random_weights: bool = False,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        head_hidden: int | None = None,
        dropout: float = 0.1,
    ) -> AnimeReward:
        encoders = build_encoders(
            preset, sources=sources, random_weights=random_weights, device=device, dtype=dtype
        )
        return cls(encoders, head_hidden=head_hidden, dropout=dropout).to(device)

    def features(self, inputs: RewardInputs) -> dict[str, Features]:
        """Encoder features of every dimension; shared frozen encoders run once per batch."""
        memo: dict = {}
        return {key: model.features(inputs, memo) for key, model in self.dimensions.items()}

    def rewards_from_features(self, features: dict[str, Features]) -> dict[str, torch.Tensor]:
        rewards = {key: self.dimensions[key].reward(*features[key]) for key in DIMENSION_KEYS}
        rewards["overall"] = torch.stack([rewards[key] for key in DIMENSION_KEYS]).mean(0)
        return rewards

    @torch.no_grad()
    def score_batch(self, inputs: RewardInputs) -> dict[str, torch.Tensor]:
        """Rewards in [0, 1] per dimension and overall, each of shape (B,), on the CPU as float32."""
        self.eval()
        rewards = self.rewards_from_features(self.features(inputs))
        return {key: value.float().cpu() for key, value in rewards.items()}

    # --- checkpoints: one folder per dimension, safetensors + config.json --------------------------

    def save(self, directory: str | Path, *, extra_config: dict | None = None) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for key, model in self.dimensions.items():
            folder = directory / key
            folder.mkdir(exist_ok=True)
            save_model(model.head, str(folder / "head.safetensors"))
            if model.own_encoders:
                for name in model.encoder_names:
                    save_model(getattr(model, name), str(folder / f"{name}.safetensors"))
            (folder / "config.json").write_text(
                json.dumps(
                    {
                        "dimension": key,
                        "head": type(model.head).__name__,
                        "head_hidden": self.head_hidden,
                        "dropout": self.dropout,
                        "finetuned_encoders": list(model.encoder_names)
                        if model.own_encoders
                        else [],
                    },
                    indent=2,
                )
            )
        config = {
            "preset": self.encoders.preset.name,
            "sources": self.encoders.sources,
            "head_hidden": self.head_hidden,
            "dropout": self.dropout,
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
        sources: dict[str, str] | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> AnimeReward:
        """Rebuild from ``save``'s folder; ``sources`` may point the full encoders somewhere else."""
        directory = Path(directory)
        config = json.loads((directory / REWARD_CONFIG).read_text())
        saved_sources = {
            k: v for k, v in config.get("sources", {}).items() if not v.endswith(":random")
        }
        model = cls.from_preset(
            config["preset"],
            sources={**saved_sources, **(sources or {})},
            device=device,
            dtype=dtype,
            head_hidden=config["head_hidden"],
            dropout=config["dropout"],
        )
        for key, dimension in model.dimensions.items():
            folder = directory / key
            dim_config = json.loads((folder / "config.json").read_text())
            if dim_config["finetuned_encoders"]:
                dimension.unshare_encoders()
                for name in dim_config["finetuned_encoders"]:
                    load_model(
                        getattr(dimension, name),
                        str(folder / f"{name}.safetensors"),
                        device=str(device),
                    )
                    getattr(dimension, name).requires_grad_(False)
            load_model(dimension.head, str(folder / "head.safetensors"), device=str(device))
        return model.eval()
