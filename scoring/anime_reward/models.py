"""AnimeReward: one reward model per dimension (METHOD.md), each mapping
(frames, condition image, prompt, character reference) to a reward in [0, 1].

Each dimension model splits into ``features`` (the encoders: frozen by default, so the trainer can
cache them per clip) and ``head`` (the learned part). Features are ``(values, mask)`` with values
of shape (B, L, F): L per-frame tokens (or one clip-level token) that the head scores and averages.

    smoothness   Idefics2 vision transformer (Mantis-8B-Idefics2's tower) per frame, with the change
                 from the previous frame -> regression head, averaged over frames
    motion       X-CLIP: cosine similarity of the video to the "large motion" and "still" prompts
                 (times X-CLIP's logit scale), softmax over the two = a sigmoid of the gap, plus a
                 residual head on frame-to-frame change, zero at init (so untrained = METHOD)
    appeal       keyframes (largest frame-to-frame change, K per preset) -> CLIP vision ->
                 aesthetic head, averaged
    text         CLIP vision (clip mean) + CLIP text (prompt) -> head on the pair
    image        CLIP vision on the condition image and each frame -> head on the pair, averaged
    character    GroundingDINO finds characters on the condition image ("character."), SAM tracks
                 their masks through ``track_frames`` (8) frames spread over the clip (box of
                 tracked frame t-1's mask prompts frame t, all frames of all clips in two batched
                 passes), BLIP embeds the masked crops; cosine
                 similarity to the clip's character in the character gallery (else to the
                 reference image or the detected crop) -> small head

Fine-tuning (``unshare_encoders``) gives a dimension its own trainable copy of its encoders, with
optional freezing of the embeddings and the first N layers, and gradient checkpointing.

Overall reward = mean of the six.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from labelhub.dimensions import DIMENSION_KEYS

from .anisora.reward import PRESET as ANISORA_PRESET
from .anisora.reward import AnisoraReward
from .frames import RewardInputs
from .presets import Encoders, ImageSpec, build_encoders

MOTION_PROMPTS = (
    "the main character makes large movements such as running, jumping, dancing or waving",
    "the main character stays still",
)
CHARACTER_PROMPT = "character."
MIN_BOX_SIDE = 1 / 8  # of the frame; keeps a degenerate detection from cropping nothing
REWARD_CONFIG = "reward_config.json"
GALLERY_FILE = "character_gallery.safetensors"

Features = tuple[torch.Tensor, torch.Tensor]  # values (B, L, F), mask (B, L) bool


# --- small tensor helpers ------------------------------------------------------------------------


def _device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(module.parameters())
    return param.device, param.dtype


def shrink_pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3, size, size), bilinear with antialiasing. uint8 stays uint8 on a CPU
    (torch's SIMD antialiased kernel, ~3x faster than on floats, within 1/255 of them); elsewhere
    the pixels become float (that kernel is the CPU's)."""
    if images.dtype == torch.uint8 and images.device.type != "cpu":
        images = images.float()
    return F.interpolate(
        images, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )


def to_pixels(images: torch.Tensor, spec: ImageSpec, module: nn.Module) -> torch.Tensor:
    """uint8 (N, 3, S, S) -> normalised float pixels at the encoder's size, on its device
    (a downscale by ``shrink_pixels``; the normalisation runs in place)."""
    device, dtype = _device_dtype(module)
    x = images.to(device, non_blocking=True)
    if x.shape[-1] > spec.size:
        x = shrink_pixels(x, spec.size)
    elif x.shape[-1] < spec.size:
        x = F.interpolate(
            x.float(), size=(spec.size, spec.size), mode="bilinear", align_corners=False
        )
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
    scale = 1 / (255.0 * std)
    shift = -torch.tensor(spec.mean, device=device).view(1, 3, 1, 1) / std
    # in place on a fresh float copy: a new output tensor for each op costs more than the op
    return x.to(torch.float32, copy=True).mul_(scale).add_(shift).to(dtype)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of (B, L) values where mask is True (0 where a row has no valid entry)."""
    weights = mask.to(values.dtype)
    return (values * weights).sum(1) / weights.sum(1).clamp(min=1)


def box_grid(boxes: torch.Tensor, size: int) -> torch.Tensor:
    """``grid_sample`` grids (N, size, size, 2) that cut normalised xyxy boxes (N, 4) out of images."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    theta = torch.zeros(boxes.shape[0], 2, 3, device=boxes.device, dtype=boxes.dtype)
    theta[:, 0, 0] = x2 - x1
    theta[:, 0, 2] = x1 + x2 - 1
    theta[:, 1, 1] = y2 - y1
    theta[:, 1, 2] = y1 + y2 - 1
    return F.affine_grid(theta, [boxes.shape[0], 1, size, size], align_corners=False)


def crop_and_resize(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop normalised xyxy boxes out of (N, 3, H, W) images and resize to (N, 3, size, size)."""
    grid = box_grid(boxes.to(images.dtype), size)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def widen_boxes(boxes: torch.Tensor, min_side: float = MIN_BOX_SIDE) -> torch.Tensor:
    """Clamp normalised xyxy boxes to the frame and give them at least ``min_side`` per side."""
    center = (boxes[..., :2] + boxes[..., 2:]) / 2
    half = ((boxes[..., 2:] - boxes[..., :2]).abs() / 2).clamp(min=min_side / 2)
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


def _window(masks: torch.Tensor, radius: int, dim: int, op) -> torch.Tensor:
    """``op`` (logical and / or) of each cell with its neighbours up to ``radius`` away along
    ``dim``; cells past the edge are left out (as max pooling's -inf padding leaves them out)."""
    out, n = masks.clone(), masks.shape[dim]
    for shift in range(1, min(radius, n - 1) + 1):
        low, high = out.narrow(dim, 0, n - shift), out.narrow(dim, shift, n - shift)
        low.copy_(op(low, masks.narrow(dim, shift, n - shift)))
        high.copy_(op(high, masks.narrow(dim, 0, n - shift)))
    return out


def mask_solidity(masks: torch.Tensor, grid: int = 64, radius: int = 2) -> torch.Tensor:
    """Share of each boolean mask (..., H, W) that survives a morphological opening (erode, then
    dilate, by ``radius`` cells on a ``grid`` x ``grid`` copy, whatever the frame size; a mask
    coarser than the grid keeps its size and the radius shrinks with it): about 1 for a region
    wider than a few cells, near 0 for speckle or a maze of thin strands (a random or failed
    segmenter). The square structuring element is applied as two 1-D passes of shifted boolean
    ands / ors (about 9x faster on a CPU than max pooling floats, same result)."""
    x = masks.flatten(0, -3)
    side = min(x.shape[-2:])
    if side < grid:
        radius = max(1, round(radius * side / grid))
    elif x.shape[-1] != grid or x.shape[-2] != grid:
        x = F.adaptive_avg_pool2d(x[:, None].float(), grid)[:, 0] > 0.5
    x = x.bool()
    eroded = _window(_window(x, radius, -1, torch.logical_and), radius, -2, torch.logical_and)
    opened = _window(_window(eroded, radius, -1, torch.logical_or), radius, -2, torch.logical_or)
    opened &= x
    area = torch.count_nonzero(x.flatten(1), dim=1).clamp(min=1)
    solidity = torch.count_nonzero(opened.flatten(1), dim=1) / area
    return solidity.float().view(masks.shape[:-2])


def select_keyframes(frames: torch.Tensor, mask: torch.Tensor, count: int) -> torch.Tensor:
    """Frame-difference keyframes: the first frame plus the ``count - 1`` frames that differ most
    from their predecessor (shot changes, key poses), in time order. (B, T, 3, S, S) uint8 and a
    (B, T) mask -> (B, K) frame indices, K = min(count, T); short clips repeat their last frame."""
    batch, length = frames.shape[:2]
    count = min(count, length)
    small = shrink_pixels(frames.flatten(0, 1), 16).view(batch, length, -1).float()
    change = torch.zeros(batch, length)
    change[:, 1:] = (small[:, 1:] - small[:, :-1]).abs().mean(-1).cpu()
    change[:, 0] = float("inf")  # the first frame is always a keyframe
    change = change.masked_fill(~mask.cpu(), float("-inf"))
    picked = change.topk(count, dim=1).indices
    # A clip with fewer real frames than K: padded picks point at its last real frame.
    last = (mask.cpu().sum(1) - 1).clamp(min=0)[:, None]
    picked = torch.where(mask.cpu().gather(1, picked), picked, last)
    return picked.sort(1).values


def spread_frames(
    frames: torch.Tensor, mask: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` frames spread evenly over each clip's real frames, first and last included:
    (B, T, ...) frames and a (B, T) mask of real frames (a prefix) -> (B, count, ...) frames and a
    (B, count) mask that is False on repeats (a clip shorter than ``count``) and on empty clips.
    ``count`` <= 0 keeps every frame."""
    if count <= 0:
        return frames, mask
    lengths = mask.sum(1).to(frames.device)
    steps = torch.linspace(0, 1, count, device=frames.device)
    index = (steps[None] * (lengths[:, None] - 1).clamp(min=0)).round().long()  # (B, count)
    picked = frames[torch.arange(len(frames), device=frames.device)[:, None], index]
    fresh = torch.ones_like(index, dtype=torch.bool)
    fresh[:, 1:] = index[:, 1:] != index[:, :-1]
    return picked, (fresh & (lengths[:, None] > 0)).to(mask.device)


def _memo(memo: dict, key: tuple, compute):
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def frames_for(
    module: nn.Module, spec: ImageSpec, inputs: RewardInputs, memo: dict
) -> torch.Tensor:
    """The batch's frames for an encoder on the CPU: shrunk to its size once per batch and shared
    by every encoder of that size (CLIP and Idefics2 in tiny). On a GPU, the frames as they are
    (each encoder resizes them there)."""
    frames = inputs.frames
    if _device_dtype(module)[0].type != "cpu" or frames.shape[-1] <= spec.size:
        return frames
    return _memo(
        memo,
        ("frames", spec.size),
        lambda: shrink_pixels(frames.flatten(0, 1), spec.size).view(
            *frames.shape[:3], spec.size, spec.size
        ),
    )


# --- encoder features ----------------------------------------------------------------------------


def clip_frame_embeds(clip: nn.Module, spec: ImageSpec, frames: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, S, S) uint8 -> (B, T, D) unit CLIP image embeddings."""
    batch, length = frames.shape[:2]
    pixels = to_pixels(frames.flatten(0, 1), spec, clip)
    embeds = clip.visual_projection(clip.vision_model(pixel_values=pixels).pooler_output)
    return F.normalize(embeds.float(), dim=-1).view(batch, length, -1)


def idefics2_frame_embeds(model: nn.Module, spec: ImageSpec, frames: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, S, S) uint8 -> (B, T, D): Idefics2 vision transformer, patch tokens mean-pooled."""
    batch, length = frames.shape[:2]
    pixels = to_pixels(frames.flatten(0, 1), spec, model)
    hidden = model(pixel_values=pixels).last_hidden_state
    return hidden.float().mean(1).view(batch, length, -1)


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

    @property
    def tuned_encoder_names(self) -> tuple[str, ...]:
        """The encoders fine-tuning copies and trains (character: BLIP only)."""
        return self.encoder_names

    def unshare_encoders(
        self, *, frozen_layers: int = 0, gradient_checkpointing: bool = False
    ) -> None:
        """Give this dimension its own trainable copy of its encoders (fine-tuning).

        ``frozen_layers``: 0 trains everything; N > 0 keeps the patch/token embeddings and the
        first N transformer layers of each tower frozen; -1 freezes all but the last layer.
        """
        if not self.finetunable:
            raise ValueError(f"{self.key}: its encoders stay frozen")
        for name in self.tuned_encoder_names:
            module = copy.deepcopy(getattr(self, name)).float().requires_grad_(True)
            if frozen_layers:
                freeze_lower_layers(module, frozen_layers)
            if gradient_checkpointing and getattr(module, "supports_gradient_checkpointing", False):
                module.gradient_checkpointing_enable()
            setattr(self, name, module)
        self.own_encoders = True

    def encoder_parameters(self) -> list[nn.Parameter]:
        return [
            p
            for name in self.tuned_encoder_names
            for p in getattr(self, name).parameters()
            if p.requires_grad
        ]

    def _frame_embeds(self, inputs: RewardInputs, memo: dict) -> torch.Tensor:
        spec = self.encoders.preset.images["clip"]
        return _memo(
            memo,
            (id(self.clip), "frames"),
            lambda: clip_frame_embeds(self.clip, spec, frames_for(self.clip, spec, inputs, memo)),
        )


class SmoothnessReward(DimensionReward):
    key, encoder_names = "visual_smoothness", ("idefics2",)

    def __init__(self, encoders: Encoders, hidden: int, dropout: float):
        dim = encoders.idefics2.config.hidden_size
        super().__init__(encoders, RegressionHead(2 * dim, hidden, dropout))

    def features(self, inputs, memo):
        spec = self.encoders.preset.images["idefics2"]
        embeds = _memo(
            memo,
            (id(self.idefics2), "frames"),
            lambda: idefics2_frame_embeds(
                self.idefics2, spec, frames_for(self.idefics2, spec, inputs, memo)
            ),
        )
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
        picked, _ = spread_frames(inputs.frames, inputs.frame_mask, num_frames)
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
        self.keyframes = encoders.preset.keyframes

    def features(self, inputs, memo):
        """Keyframes first, then the appeal encoder and the aesthetic head on those frames only."""
        picked = select_keyframes(inputs.frames, inputs.frame_mask, self.keyframes)
        spec = self.encoders.preset.images["clip"]
        shared = (id(self.clip), "frames")
        if shared in memo:  # the shared CLIP already embedded every frame: take the keyframes
            embeds = memo[shared].gather(
                1, picked.to(memo[shared].device)[..., None].expand(-1, -1, memo[shared].shape[-1])
            )
        else:
            keyframes = inputs.frames.gather(
                1, picked[:, :, None, None, None].expand(-1, -1, *inputs.frames.shape[2:])
            )
            embeds = clip_frame_embeds(self.clip, spec, keyframes)
        return embeds, torch.ones(embeds.shape[:2], dtype=torch.bool, device=embeds.device)


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

    def contrastive_loss(
        self,
        values: torch.Tensor,
        prompts: Sequence[str],
        weights: torch.Tensor,
        temperature: float = 0.1,
    ) -> torch.Tensor:
        """CLIP-style InfoNCE between each clip's video embedding and the batch's distinct
        prompts, weighted by how well the clip matches its prompt (its target in [0, 1]): matching
        clips pull their video towards their prompt and away from the other prompts, and clips that
        do not match (weight ``1 - target``) push their video away from their own prompt; this
        trains the vision and the text tower together (``values`` are ``features``' values)."""
        dim = (values.shape[-1] - 1) // 3
        video, text = values[:, 0, :dim].float(), values[:, 0, dim : 2 * dim].float()
        distinct = list(dict.fromkeys(prompts))
        if len(distinct) < 2:
            return values.new_zeros(())
        first = [list(prompts).index(p) for p in distinct]
        targets = torch.tensor([distinct.index(p) for p in prompts], device=values.device)
        logits = video @ text[first].T / temperature
        losses = F.cross_entropy(logits, targets, reduction="none")
        weights = weights.to(losses)
        pull = (losses * weights).sum() / weights.sum().clamp(min=1e-6)
        # clips that do not match their prompt: push the video away from it, by how badly
        own = logits.softmax(-1).gather(1, targets[:, None])[:, 0]
        push = -torch.log1p(-own.clamp(max=1 - 1e-4))
        away = 1 - weights
        return pull + (push * away).sum() / away.sum().clamp(min=1e-6)


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


@dataclass
class CharacterCrops:
    """What detection + tracking give the character model: masked crops at BLIP's size (uint8),
    so a fine-tuned BLIP can be trained on them without running GroundingDINO and SAM again."""

    crops: torch.Tensor  # (B, T, K, 3, s, s) uint8: tracked, background greyed
    frame_mask: torch.Tensor  # (B, T) bool
    condition_crops: torch.Tensor  # (B, K, 3, s, s) uint8: the detected boxes on the condition
    reference: torch.Tensor  # (B, 3, s, s) uint8: the character reference image
    has_reference: torch.Tensor  # (B,) bool
    weights: torch.Tensor  # (B, K) 1 for kept detections
    character_ids: list  # per clip: gallery key (str) or None

    def __len__(self) -> int:
        return self.crops.shape[0]

    def select(self, rows: list[int]) -> CharacterCrops:
        return CharacterCrops(
            self.crops[rows],
            self.frame_mask[rows],
            self.condition_crops[rows],
            self.reference[rows],
            self.has_reference[rows],
            self.weights[rows],
            [self.character_ids[r] for r in rows],
        )

    @staticmethod
    def cat(parts: Sequence[CharacterCrops]) -> CharacterCrops:
        """Concatenate along clips; shorter clips repeat their last frame (mask False)."""
        length = max(p.crops.shape[1] for p in parts)

        def pad(x: torch.Tensor, fill) -> torch.Tensor:
            extra = length - x.shape[1]
            if not extra:
                return x
            tail = x[:, -1:].expand(-1, extra, *x.shape[2:]) if fill is None else None
            if tail is None:
                tail = torch.full((x.shape[0], extra, *x.shape[2:]), fill, dtype=x.dtype)
            return torch.cat([x, tail], 1)

        return CharacterCrops(
            torch.cat([pad(p.crops, None) for p in parts]),
            torch.cat([pad(p.frame_mask, False) for p in parts]),
            torch.cat([p.condition_crops for p in parts]),
            torch.cat([p.reference for p in parts]),
            torch.cat([p.has_reference for p in parts]),
            torch.cat([p.weights for p in parts]),
            [c for p in parts for c in p.character_ids],
        )


def distinct_images(images: torch.Tensor) -> tuple[list[int], list[int]]:
    """Row of the first occurrence of each distinct image, and for each image the index of its
    distinct one: (N, ...) -> (firsts, inverse) with images[firsts][inverse] == images."""
    firsts: list[int] = []
    inverse: list[int] = []
    for i, image in enumerate(images):
        same = next((k for k, j in enumerate(firsts) if torch.equal(images[j], image)), None)
        if same is None:
            same = len(firsts)
            firsts.append(i)
        inverse.append(same)
    return firsts, inverse


def _to_uint8(images: torch.Tensor) -> torch.Tensor:
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu()


class CharacterConsistencyReward(DimensionReward):
    """Detect (GroundingDINO, batched over clips), track (SAM, batched over frames and clips),
    embed (BLIP, batched over all crops), compare with the character gallery."""

    key = "character_consistency"
    encoder_names = ("grounding_dino", "sam", "blip")
    num_features = 5

    def __init__(self, encoders: Encoders, hidden: int, dropout: float):
        super().__init__(encoders, RegressionHead(self.num_features, hidden, dropout))
        self.track_frames = encoders.preset.track_frames  # 0: every sampled frame
        # character id (str) -> (N, 3, s, s) uint8 reference images at BLIP's size
        self.gallery: dict[str, torch.Tensor] = {}

    @property
    def tuned_encoder_names(self) -> tuple[str, ...]:
        return ("blip",)  # detection and tracking stay frozen; BLIP learns the characters

    def features(self, inputs, memo):
        return self.features_from_crops(self.track(inputs))

    def features_from_crops(self, crops: CharacterCrops) -> Features:
        sims, first_sims, weights = self.compare(crops)
        mask = crops.frame_mask.to(sims.device)
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
        return values[:, None], torch.ones(len(crops), 1, dtype=torch.bool, device=values.device)

    # --- the gallery ---------------------------------------------------------------------------

    def set_gallery(self, gallery: dict) -> None:
        """character id -> reference images: paths, or uint8 tensors (N, 3, H, W) / (3, H, W)."""
        from .frames import read_image

        size = self.encoders.preset.images["blip"].size
        out = {}
        for character, refs in gallery.items():
            if isinstance(refs, torch.Tensor):
                images = refs if refs.dim() == 4 else refs[None]
            else:
                if isinstance(refs, str | Path):
                    refs = [refs]
                if not refs:
                    raise ValueError(f"character {character!r} has no reference images")
                images = torch.stack([read_image(path, size=size) for path in refs])
            if images.dtype != torch.uint8 or images.shape[1] != 3:
                raise ValueError(f"character {character!r}: references must be uint8 (N, 3, H, W)")
            if images.shape[-1] != size or images.shape[-2] != size:
                images = _to_uint8(
                    F.interpolate(images.float() / 255, size=(size, size), mode="bilinear")
                )
            out[str(character)] = images.cpu().contiguous()
        self.gallery = out

    def gallery_features(self, characters: Sequence[str]) -> dict[str, torch.Tensor]:
        """Unit BLIP feature per character: the normalised mean of its references' embeddings."""
        characters = sorted(set(characters))
        if not characters:
            return {}
        images = torch.cat([self.gallery[c] for c in characters])
        device, _ = _device_dtype(self.blip)
        embeds = self.embed(images.to(device).float() / 255.0)
        out, start = {}, 0
        for c in characters:
            n = len(self.gallery[c])
            out[c] = F.normalize(embeds[start : start + n].mean(0), dim=-1)
            start += n
        return out

    # --- detect and track (frozen) --------------------------------------------------------------

    @torch.no_grad()
    def detect(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """GroundingDINO on the condition images (one batch): top-K character boxes and weights.
        Each distinct image is detected once: a round's candidates of one condition share it."""
        distinct, inverse = distinct_images(condition)
        if len(distinct) < len(condition):
            boxes, keep = self.detect(condition[distinct])
            return boxes[inverse], keep[inverse]
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
        boxes = widen_boxes(
            torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1), preset.min_box_side
        )
        keep = top.values >= preset.box_threshold
        keep[:, 0] = True  # always follow the most likely character
        return boxes, keep.float()

    @torch.no_grad()
    def segment(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """SAM mask logits for N images at once, at SAM's own mask resolution (256 px for the real
        model): (N, C, h, w) embeddings, (N, K, 4) normalised boxes -> (N, K, m, m) logits."""
        sam_spec, sam = self.encoders.preset.images["sam"], self.sam
        out = []
        for emb, box in zip(embeddings.split(256), boxes.split(256), strict=True):
            pred = sam(
                image_embeddings=emb,
                input_boxes=(box * sam_spec.size).to(emb.dtype),
                multimask_output=False,
            ).pred_masks[:, :, 0]
            out.append(pred.float())
        return torch.cat(out)

    def _masks(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> boolean masks, speckle (no region: a lost character, a random segmenter) emptied."""
        masks = logits > 0
        solid = mask_solidity(masks) >= self.encoders.preset.min_mask_solidity
        return masks & solid[..., None, None]

    @torch.no_grad()
    def track(self, inputs: RewardInputs) -> CharacterCrops:
        """Detect on the condition image, then track every character through ``track_frames``
        frames spread over the clip (identity is averaged over frames and changes over seconds,
        not between neighbouring frames; tracking every sampled frame would triple the cost).

        Tracking is batched: pass 1 prompts frames 0..T-2 of every clip with the detected box;
        pass 2 prompts frame t >= 1 with the box of pass 1's mask on frame t-1 (frame 0's prompt
        is the detection, which pass 1 segmented already), so SAM's decoder runs 2T - 2 times per
        character over all clips at once instead of once per frame in a loop. Masks stay at SAM's
        mask resolution; crops are cut from the frames and the mask logits on the same grid.
        """
        preset, sam = self.encoders.preset, self.sam
        detected, weights = self.detect(inputs.condition)
        picked, frame_mask = spread_frames(inputs.frames, inputs.frame_mask, self.track_frames)
        batch, length = picked.shape[:2]
        characters = detected.shape[1]
        sam_spec, blip_size = preset.images["sam"], preset.images["blip"].size
        # SAM's memory grows with pixels (its global attention bias is 400 MB a frame at 1024 px):
        # 32 frames a call at 1024, more at smaller sizes
        chunk = max(1, min(256, 32 * (1024 // sam_spec.size) ** 2))
        embeddings = torch.cat(
            [
                sam.get_image_embeddings(to_pixels(frames, sam_spec, sam))
                for frames in picked.flatten(0, 1).split(chunk)
            ]
        )
        embeddings = embeddings.view(batch, length, *embeddings.shape[1:])
        device = embeddings.device
        detected = detected.to(device)
        lead = max(length - 1, 1)  # pass 1: every frame but the last (whose mask nothing uses)
        first = detected[:, None].expand(-1, lead, -1, -1)  # (B, lead, K, 4)
        logits = self.segment(embeddings[:, :lead].flatten(0, 1), first.flatten(0, 1))
        logits = logits.view(batch, lead, characters, *logits.shape[-2:])
        if length > 1:
            tracked = widen_boxes(mask_boxes(self._masks(logits), first), preset.min_box_side)
            again = self.segment(embeddings[:, 1:].flatten(0, 1), tracked.flatten(0, 1))
            logits = torch.cat([logits[:, :1], again.view_as(logits)], 1)  # (B, T, K, m, m)
            prompts = torch.cat([detected[:, None], tracked], 1)
        else:
            prompts = first
        masks = self._masks(logits)
        boxes = widen_boxes(mask_boxes(masks, prompts), preset.min_box_side)  # (B, T, K, 4)
        # Crop each frame at its characters' boxes, then grey out the background by the mask
        # logits sampled on the same grid. An empty or speckled mask (SAM lost the character, or a
        # random segmenter gave no region) keeps the whole box, and its prompt box carries on.
        grid = box_grid(boxes.flatten(0, 2), blip_size)  # (B*T*K, s, s, 2)
        frames = picked.flatten(0, 1).to(device).float().mul_(1 / 255)
        crops = F.grid_sample(  # all K boxes of a frame in one call: grids stacked along height
            frames,
            grid.view(batch * length, characters * blip_size, blip_size, 2),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        ).view(batch * length, 3, characters, blip_size, blip_size)
        crops = crops.transpose(1, 2).flatten(0, 1)  # (B*T*K, 3, s, s)
        inside = (
            F.grid_sample(
                logits.flatten(0, 2)[:, None],
                grid,
                mode="bilinear",
                padding_mode="border",
                align_corners=False,
            )
            > 0
        )
        lost = ~masks.flatten(3).any(-1).flatten()  # (B*T*K,)
        crops = torch.where(inside | lost[:, None, None, None], crops, 0.5)
        condition = inputs.condition.to(device).float() / 255.0
        condition_crops = crop_and_resize(
            condition.repeat_interleave(characters, 0), detected.flatten(0, 1), blip_size
        )
        reference = crop_and_resize(
            inputs.reference.to(device).float() / 255.0,
            torch.tensor([[0.0, 0.0, 1.0, 1.0]], device=device).expand(batch, -1),
            blip_size,
        )
        return CharacterCrops(
            crops=_to_uint8(crops).view(batch, length, characters, 3, blip_size, blip_size),
            frame_mask=frame_mask.cpu(),
            condition_crops=_to_uint8(condition_crops).view(
                batch, characters, 3, blip_size, blip_size
            ),
            reference=_to_uint8(reference),
            has_reference=inputs.has_reference.cpu(),
            weights=weights.cpu(),
            character_ids=[None if c is None else str(c) for c in inputs.character_ids],
        )

    # --- embed and compare (BLIP: the trainable part) ------------------------------------------

    def compare(self, crops: CharacterCrops) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cosine similarities (B, T, K) of each tracked crop to the clip's character (gallery
        feature; else the reference image, else the detected crop) and to its own first crop."""
        device, _ = _device_dtype(self.blip)
        batch, length, characters = crops.crops.shape[:3]
        images = [crops.crops.flatten(0, 2), crops.condition_crops.flatten(0, 1), crops.reference]
        embeds = self.embed(torch.cat(images).to(device).float().mul_(1 / 255))  # one BLIP pass
        crop_embeds, from_condition, from_reference = embeds.split([len(i) for i in images])
        crop_embeds = crop_embeds.view(batch, length, characters, -1)
        from_condition = from_condition.view(batch, characters, -1)
        from_reference = from_reference[:, None].expand(-1, characters, -1)
        has_reference = crops.has_reference.to(device)[:, None, None]
        reference = torch.where(has_reference, from_reference, from_condition)
        in_gallery = [c is not None and c in self.gallery for c in crops.character_ids]
        if any(in_gallery):
            features = self.gallery_features(
                [c for c, ok in zip(crops.character_ids, in_gallery, strict=True) if ok]
            )
            rows = [
                features[c][None].expand(characters, -1) if ok else reference[i]
                for i, (c, ok) in enumerate(zip(crops.character_ids, in_gallery, strict=True))
            ]
            reference = torch.stack(rows)
        sims = (crop_embeds * reference[:, None]).sum(-1)
        first_sims = (crop_embeds * crop_embeds[:, :1]).sum(-1)
        return sims, first_sims, crops.weights.to(device)

    def contrastive_loss(
        self,
        crops: CharacterCrops,
        targets: torch.Tensor | None = None,
        temperature: float = 0.1,
        lead_frames: int = 1,
        jitter: float = 0.0,
    ) -> torch.Tensor:
        """InfoNCE between tracked mask crops and the gallery characters: pulls a crop to its
        character, away from the rest. Positives: every kept detection on each clip's first
        ``lead_frames`` frames (the clip starts from the condition image, so its opening frames
        show the character) and the gallery's own images. With ``targets`` (the clips' character
        scores in [0, 1]), each clip's last frame is also pushed away from its character, weighted
        by ``1 - target``: a low score says the clip ends on someone else."""
        labelled = [i for i, c in enumerate(crops.character_ids) if c in self.gallery]
        characters = sorted(self.gallery)
        if not labelled or len(characters) < 2:
            return torch.zeros((), device=_device_dtype(self.blip)[0])
        device, _ = _device_dtype(self.blip)
        features = self.gallery_features(characters)
        table = torch.stack([features[c] for c in characters])  # (C, D)
        own = torch.tensor([characters.index(crops.character_ids[i]) for i in labelled])
        lengths = crops.frame_mask[labelled].sum(1)  # (N,)
        lead = max(1, min(lead_frames, int(lengths.min())))
        kept = crops.weights[labelled]  # (N, K)
        lead_crops = crops.crops[labelled, :lead]  # (N, lead, K, 3, s, s)
        last = (lengths - 1).clamp(min=0)
        last_crops = crops.crops[labelled, last]  # (N, K, 3, s, s)
        references = torch.cat([self.gallery[c] for c in characters])
        images = torch.cat([lead_crops.flatten(0, 2), last_crops.flatten(0, 1), references])
        pixels = images.to(device).float() / 255.0
        if jitter:
            pixels = colour_jitter(pixels, jitter)
        embeds = self.embed(pixels)
        logits = embeds @ table.T / temperature
        n_lead, n_last = (
            lead_crops.shape[0] * lead * kept.shape[1],
            last_crops.shape[0] * kept.shape[1],
        )
        lead_targets = own[:, None, None].expand(-1, lead, kept.shape[1]).flatten()
        ref_targets = torch.tensor(
            [k for k, c in enumerate(characters) for _ in range(len(self.gallery[c]))]
        )
        positive = torch.cat([logits[:n_lead], logits[n_lead + n_last :]])
        weights = torch.cat(
            [kept[:, None].expand(-1, lead, -1).flatten(), torch.ones(len(references))]
        ).to(device)
        losses = F.cross_entropy(
            positive, torch.cat([lead_targets, ref_targets]).to(device), reduction="none"
        )
        loss = (losses * weights).sum() / weights.sum()
        if targets is not None:
            away = 1 - targets[labelled].to(device).float().clamp(0, 1)  # (N,)
            own_prob = (
                logits[n_lead : n_lead + n_last]
                .softmax(-1)
                .view(len(labelled), -1, len(characters))
            )
            own_prob = own_prob.gather(
                2, own.to(device)[:, None, None].expand(-1, own_prob.shape[1], 1)
            )[..., 0]
            push = -torch.log1p(-own_prob.clamp(max=1 - 1e-4))  # (N, K)
            w = away[:, None] * kept.to(device)
            loss = loss + (push * w).sum() / w.sum().clamp(min=1e-6)
        return loss

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """BLIP image embeddings (unit vectors) of (N, 3, s, s) crops with values in [0, 1]."""
        blip, spec = self.blip, self.encoders.preset.images["blip"]
        device, dtype = _device_dtype(blip)
        mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
        out = []
        for chunk in crops.split(256):
            pixels = ((chunk.to(device) - mean) / std).to(dtype)
            hidden = blip.vision_model(pixel_values=pixels).last_hidden_state[:, 0]
            out.append(F.normalize(blip.vision_proj(hidden).float(), dim=-1))
        return torch.cat(out)


def colour_jitter(images: torch.Tensor, strength: float) -> torch.Tensor:
    """Random brightness (x [1 - s, 1 + s]) and tint (+- s / 4 per channel) per image, for
    (N, 3, H, W) values in [0, 1]: identity must not hang on lighting or colour grading."""
    n = len(images)
    scale = 1 + strength * (2 * torch.rand(n, 1, 1, 1, device=images.device) - 1)
    shift = strength / 4 * (2 * torch.rand(n, 3, 1, 1, device=images.device) - 1)
    return (images * scale + shift).clamp(0, 1)


def freeze_lower_layers(module: nn.Module, layers: int) -> None:
    """Freeze embeddings and the first ``layers`` blocks of every layer stack (-1: all but the last)."""
    for name, param in module.named_parameters():
        if "embed" in name.split(".")[0] or ".embeddings." in f".{name}" or "patch_embed" in name:
            param.requires_grad_(False)
    for name, child in module.named_modules():
        if isinstance(child, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layers", "layer"):
            count = len(child) - 1 if layers < 0 else min(layers, len(child))
            for block in list(child)[:count]:
                block.requires_grad_(False)


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

    def __init__(
        self,
        encoders: Encoders,
        *,
        head_hidden: int | None = None,
        dropout: float = 0.1,
        keyframes: int | None = None,
        track_frames: int | None = None,
    ):
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
        if keyframes is not None:
            self.dimensions["visual_appeal"].keyframes = keyframes
        if track_frames is not None:
            self.dimensions["character_consistency"].track_frames = track_frames

    @property
    def gallery(self) -> dict[str, torch.Tensor]:
        return self.dimensions["character_consistency"].gallery

    def set_gallery(self, gallery: dict) -> None:
        """The character gallery: character id -> reference image paths (or uint8 tensors)."""
        self.dimensions["character_consistency"].set_gallery(gallery)

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
        keyframes: int | None = None,
        track_frames: int | None = None,
        gallery: dict | None = None,
    ) -> AnimeReward:
        encoders = build_encoders(
            preset, sources=sources, random_weights=random_weights, device=device, dtype=dtype
        )
        model = cls(
            encoders,
            head_hidden=head_hidden,
            dropout=dropout,
            keyframes=keyframes,
            track_frames=track_frames,
        )
        if gallery:
            model.set_gallery(gallery)
        return model.to(device)

    def features(self, inputs: RewardInputs) -> dict[str, Features]:
        """Encoder features of every dimension; shared frozen encoders run once per batch."""
        memo: dict = {}
        # appeal last: with a shared CLIP it takes its keyframes from the frame embeddings text and
        # image consistency computed, instead of running CLIP on them again
        order = sorted(self.dimensions, key=lambda key: key == "visual_appeal")
        features = {key: self.dimensions[key].features(inputs, memo) for key in order}
        return {key: features[key] for key in self.dimensions}

    def rewards_from_features(self, features: dict[str, Features]) -> dict[str, torch.Tensor]:
        rewards = {key: self.dimensions[key].reward(*features[key]) for key in DIMENSION_KEYS}
        rewards["overall"] = torch.stack([rewards[key] for key in DIMENSION_KEYS]).mean(0)
        return rewards

    @torch.inference_mode()
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
                for name in model.tuned_encoder_names:
                    save_model(getattr(model, name), str(folder / f"{name}.safetensors"))
            (folder / "config.json").write_text(
                json.dumps(
                    {
                        "dimension": key,
                        "head": type(model.head).__name__,
                        "head_hidden": self.head_hidden,
                        "dropout": self.dropout,
                        "finetuned_encoders": list(model.tuned_encoder_names)
                        if model.own_encoders
                        else [],
                    },
                    indent=2,
                )
            )
        gallery = self.gallery
        if gallery:
            save_file(
                {f"character_{i}": gallery[c] for i, c in enumerate(gallery)},
                str(directory / GALLERY_FILE),
            )
        config = {
            "preset": self.encoders.preset.name,
            "sources": self.encoders.sources,
            "head_hidden": self.head_hidden,
            "dropout": self.dropout,
            "keyframes": self.dimensions["visual_appeal"].keyframes,
            "track_frames": self.dimensions["character_consistency"].track_frames,
            "gallery_characters": list(gallery),
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
    ) -> AnimeReward | AnisoraReward:
        """Rebuild from ``save``'s folder; ``sources`` may point the full encoders somewhere else.
        A saved ``anisora`` model (the released models) is rebuilt by ``AnisoraReward``."""
        directory = Path(directory)
        config = json.loads((directory / REWARD_CONFIG).read_text())
        if config["preset"] == ANISORA_PRESET:
            return AnisoraReward.load(directory, sources=sources, device=device, dtype=dtype)
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
            keyframes=config.get("keyframes"),
            # models saved before track_frames existed tracked every sampled frame
            track_frames=config.get("track_frames", 0),
        )
        if config.get("gallery_characters"):
            images = load_file(str(directory / GALLERY_FILE))
            model.set_gallery(
                {c: images[f"character_{i}"] for i, c in enumerate(config["gallery_characters"])}
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
                    getattr(dimension, name).to(dtype).requires_grad_(False)
            load_model(dimension.head, str(folder / "head.safetensors"), device=str(device))
        return model.eval()
