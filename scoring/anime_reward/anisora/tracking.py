"""Character tracking as the release does it: SAM 2.1 video tracking (memory of past frames)
started from boxes on the first frame, with SAMURAI's motion cue.

The release runs SAMURAI (a fork of Meta's sam2 with ``sam2.1_hiera_base_plus``): SAM 2's video
predictor, where on every tracked frame the multimask candidate is chosen by
``w * IoU(Kalman-predicted box, mask box) + (1 - w) * predicted IoU`` (``kf_score_weight`` 0.25)
once the filter is stable (15 frames whose best predicted IoU passed 0.3), a constant-velocity
Kalman filter on the box (ByteTrack's, on centre, aspect ratio and height) following the chosen
mask. Here transformers' ``Sam2VideoModel`` does the tracking and a forward hook on its mask
decoder makes the same choice: the decoder's IoU scores are replaced by the weighted score before
SAM 2 takes their argmax. Not reproduced: SAMURAI's memory-bank selection (it keeps only memory
frames whose IoU, object and Kalman scores pass thresholds; ``Sam2VideoModel`` keeps the last
``num_maskmem``), and masks' boxes are read off the decoder's low-resolution masks (256 px for
1024 px input) scaled to the input size, not off the upsampled ones.

``Sam2VideoProcessor`` needs torchvision, which this project does not install, so the two things
it does here are done below from the folder's own ``preprocessor_config.json``: frames resized to
its ``size`` (bilinear, antialiased), rescaled and normalised with its mean and std; boxes scaled
from frame pixels to that size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Sam2VideoModel
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

from .checkpoints import CheckpointKeyError
from .layout import ReleaseLayoutError, check_sam2_dir

# SAMURAI's configs (sam2.1_hiera_b+ with samurai_mode)
KF_SCORE_WEIGHT = 0.25
STABLE_FRAMES = 15
STABLE_IOU = 0.3


class BoxKalman:
    """Constant-velocity Kalman filter on (cx, cy, aspect, height), as ByteTrack's / SAMURAI's:
    noise proportional to the box height (1/20 for positions, 1/160 for velocities)."""

    POSITION, VELOCITY = 1 / 20, 1 / 160

    def __init__(self):
        self.motion = np.eye(8)
        self.motion[:4, 4:] = np.eye(4)
        self.observe = np.eye(4, 8)

    @staticmethod
    def xyah(box) -> np.ndarray:
        x0, y0, x1, y1 = (float(v) for v in box)
        height = y1 - y0
        return np.array([(x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / max(height, 1e-6), height])

    @staticmethod
    def xyxy(mean: np.ndarray) -> np.ndarray:
        cx, cy, aspect, height = mean[:4]
        width = aspect * height
        return np.array([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2])

    def initiate(self, measurement: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, p, v = measurement[3], self.POSITION, self.VELOCITY
        std = [2 * p * h, 2 * p * h, 1e-2, 2 * p * h, 10 * v * h, 10 * v * h, 1e-5, 10 * v * h]
        return np.r_[measurement, np.zeros(4)], np.diag(np.square(std))

    def predict(self, mean: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, p, v = mean[3], self.POSITION, self.VELOCITY
        noise = np.diag(np.square([p * h, p * h, 1e-2, p * h, v * h, v * h, 1e-5, v * h]))
        return self.motion @ mean, self.motion @ cov @ self.motion.T + noise

    def update(self, mean, cov, measurement) -> tuple[np.ndarray, np.ndarray]:
        h, p = mean[3], self.POSITION
        projected = self.observe @ mean
        innovation_cov = self.observe @ cov @ self.observe.T + np.diag(
            np.square([p * h, p * h, 1e-1, p * h])
        )
        gain = np.linalg.solve(innovation_cov, self.observe @ cov).T
        mean = mean + gain @ (measurement - projected)
        return mean, cov - gain @ innovation_cov @ gain.T


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of (M, 4) xyxy boxes (0 where both are empty)."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def mask_boxes(masks: torch.Tensor, scale: float) -> np.ndarray:
    """(M, h, w) mask logits -> (M, 4) xyxy boxes of their positive pixels, times ``scale``
    (an empty mask: 0, 0, 0, 0, as SAMURAI)."""
    boxes = np.zeros((len(masks), 4))
    for m, mask in enumerate(masks > 0):
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(ys):
            boxes[m] = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
    return boxes * scale


@dataclass
class Samurai:
    """One character's motion state: SAMURAI's choice among SAM 2's candidate masks."""

    kalman: BoxKalman = field(default_factory=BoxKalman)
    mean: np.ndarray | None = None
    cov: np.ndarray | None = None
    stable: int = 0
    weight: float = KF_SCORE_WEIGHT

    def choose(self, boxes: np.ndarray, ious: np.ndarray) -> int:
        """The candidate to keep given its boxes (M, 4) and predicted IoUs (M,)."""
        best = int(ious.argmax())
        if self.mean is None or self.stable == 0:  # (re)start the filter on SAM 2's best
            self.mean, self.cov = self.kalman.initiate(self.kalman.xyah(boxes[best]))
            self.stable = 1
            return best
        self.mean, self.cov = self.kalman.predict(self.mean, self.cov)
        if self.stable < STABLE_FRAMES:  # not yet trusted: SAM 2's best, filter follows it
            if ious[best] > STABLE_IOU:
                self.mean, self.cov = self.kalman.update(
                    self.mean, self.cov, self.kalman.xyah(boxes[best])
                )
                self.stable += 1
            else:
                self.stable = 0
            return best
        motion = box_iou(self.kalman.xyxy(self.mean), boxes)
        chosen = int(np.argmax(self.weight * motion + (1 - self.weight) * ious))
        self.mean, self.cov = self.kalman.update(
            self.mean, self.cov, self.kalman.xyah(boxes[chosen])
        )
        return chosen


@dataclass(frozen=True)
class Sam2Input:
    """The folder's ``preprocessor_config.json``: input size, rescale factor, mean and std."""

    height: int
    width: int
    rescale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_folder(cls, folder: Path) -> Sam2Input:
        raw = json.loads((folder / "preprocessor_config.json").read_text())
        size = raw.get("size") or {"height": 1024, "width": 1024}
        return cls(
            height=int(size["height"]),
            width=int(size["width"]),
            rescale=float(raw.get("rescale_factor", 1 / 255)),
            mean=tuple(raw.get("image_mean", (0.485, 0.456, 0.406))),
            std=tuple(raw.get("image_std", (0.229, 0.224, 0.225))),
        )

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """(T, 3, H, W) uint8 -> (T, 3, height, width) float, as the processor prepares them."""
        x = F.interpolate(
            frames.float(), size=(self.height, self.width), mode="bilinear", antialias=True
        )
        mean = torch.tensor(self.mean, device=frames.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=frames.device).view(1, 3, 1, 1)
        return (x * self.rescale - mean) / std


def load_sam2(folder: str | Path, *, device="cpu") -> tuple[Sam2VideoModel, Sam2Input]:
    """SAM 2.1 from a folder laid out as facebook/sam2.1-hiera-* ships it for transformers; a
    tensor the checkpoint lacks or has extra is an error naming it."""
    folder = check_sam2_dir(folder)
    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    if model_type not in ("sam2_video", "sam2"):
        raise ReleaseLayoutError(
            f"LABELHUB_REWARD_SOURCE_SAM={folder}: config.json has model_type {model_type!r}, "
            "expected a SAM 2.1 folder (sam2_video), as facebook/sam2.1-hiera-base-plus"
        )
    model, info = Sam2VideoModel.from_pretrained(
        str(folder), output_loading_info=True, local_files_only=True
    )
    for kind, keys in (
        ("lacks", info["missing_keys"]),
        ("has unexpected", info["unexpected_keys"]),
    ):
        if keys:
            raise CheckpointKeyError(
                f"{folder}: checkpoint {kind} {len(keys)} tensor(s), first {sorted(keys)[0]!r}"
            )
    return model.to(device).eval(), Sam2Input.from_folder(folder)


@torch.inference_mode()
def track_boxes(
    model: Sam2VideoModel,
    spec: Sam2Input,
    frames: torch.Tensor,
    boxes: torch.Tensor,
    *,
    motion_cue: bool = True,
    choosers: list[Samurai] | None = None,
) -> torch.Tensor:
    """(T, K, H, W) bool masks of K characters given by their (K, 4) xyxy boxes on frame 0,
    tracked through the (T, 3, H, W) uint8 frames by SAM 2's memory (one session, every
    character an object), the candidate masks chosen by SAMURAI's rule when ``motion_cue``
    (``choosers``: one motion state per character, fresh ones by default)."""
    height, width = frames.shape[-2:]
    device = model.device
    session = Sam2VideoInferenceSession(
        video=spec.pixels(frames.to(device)),  # resized where the model runs
        video_height=height,
        video_width=width,
        inference_device=device,
        dtype=model.dtype,
    )
    scale = torch.tensor([spec.width / width, spec.height / height] * 2)
    for k, box in enumerate(boxes.float()):
        obj_idx = session.obj_id_to_idx(k)
        corners = (box * scale).view(1, 1, 2, 2).to(device)
        labels = torch.tensor([[[2, 3]]], dtype=torch.int32, device=device)  # box corners
        session.add_point_inputs(obj_idx, 0, {"point_coords": corners, "point_labels": labels})
    session.obj_with_new_inputs = list(range(len(boxes)))

    states = choosers if choosers is not None else [Samurai() for _ in range(len(boxes))]
    if len(states) != len(boxes):
        raise ValueError(f"{len(states)} motion states for {len(boxes)} characters")
    calls: list[int] = []

    def choose(_module, _args, output):
        masks, ious, tokens, object_scores = output
        if not motion_cue or masks.shape[2] < 2:  # one mask: nothing to choose
            return output
        k = len(calls)
        calls.append(k)
        scale_up = spec.height / masks.shape[-2]
        picked = states[k].choose(
            mask_boxes(masks[0, 0], scale_up), ious[0, 0].float().cpu().numpy()
        )
        scores = torch.zeros_like(ious)
        scores[..., picked] = 1  # SAM 2 keeps the argmax
        return masks, scores, tokens, object_scores

    hook = model.mask_decoder.register_forward_hook(choose)
    out = []
    try:
        for t in range(len(frames)):
            calls.clear()
            result = model(inference_session=session, frame_idx=t)
            if calls and len(calls) != len(boxes):
                raise RuntimeError(
                    f"SAM 2 decoded {len(calls)} candidate sets for {len(boxes)} characters"
                )
            logits = F.interpolate(
                result.pred_masks.float(),
                size=(spec.height, spec.width),
                mode="bilinear",
                align_corners=False,
            )
            logits = F.interpolate(logits, size=(height, width), mode="bilinear")
            out.append(logits[:, 0].cpu() > 0)
    finally:
        hook.remove()
    return torch.stack(out)
