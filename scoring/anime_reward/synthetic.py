"""Small real videos whose human-like labels follow known rules: for tests, the demo and the bench.

Each clip is a square moving over a tinted background, written as H.264 MP4 with PyAV:
- visual_appeal follows brightness (darker clips score lower);
- visual_motion follows how far the square moves per frame;
- image_consistency follows how far the background colour drifts away from the first frame.
The other three dimensions get labels without a rule (noise around 3). The condition image is the
clip's first frame, saved as PNG.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .video import write_video

RULE_DIMENSIONS = ("visual_appeal", "visual_motion", "image_consistency")
PROMPTS = (
    "a girl waves in a sunny park",
    "a cat jumps across the room",
    "a knight runs in the rain",
    "a boy dances on a stage",
)


@dataclass
class SyntheticClip:
    index: int
    video_path: Path
    condition_image_path: Path
    prompt: str
    labels: dict[str, float]  # 1-5 label means
    brightness: float
    speed: float
    drift: float


def render_frames(
    *,
    brightness: float,
    speed: float,
    drift: float,
    frames: int = 16,
    size: int = 64,
    hue: tuple[float, float, float] = (0.3, 0.6, 0.9),
    seed: int = 0,
) -> np.ndarray:
    """(T, size, size, 3) uint8 frames of one clip."""
    rng = np.random.default_rng(seed)
    base = np.array(hue) * brightness
    target = np.array([hue[2], hue[0], hue[1]]) * brightness  # drift rotates the colour channels
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    side = size // 5
    y = int(rng.integers(0, size - side))
    x0 = float(rng.integers(0, size // 16 + 1))
    for t in range(frames):
        progress = t / max(frames - 1, 1)
        colour = (1 - drift * progress) * base + drift * progress * target
        frame = np.broadcast_to(colour, (size, size, 3)).copy()
        x = min(int(round(x0 + speed * t)), size - side)
        frame[y : y + side, x : x + side] = np.array([1.0, 0.95, 0.8]) * brightness
        out[t] = (frame * 255).clip(0, 255).astype(np.uint8)
    return out


def make_labelled_clips(
    directory: Path, count: int, *, seed: int = 0, frames: int = 16, size: int = 64
) -> list[SyntheticClip]:
    """Write ``count`` clips with independent brightness, speed and drift, and labels from the rules."""
    rng = random.Random(seed)
    clips = []
    for index in range(count):
        brightness, drift = rng.uniform(0.25, 1.0), rng.uniform(0.0, 1.0)
        speed = rng.uniform(0.0, 2.5 * 16 / frames)  # pixels per frame; the square stays in view
        array = render_frames(
            brightness=brightness,
            speed=speed,
            drift=drift,
            frames=frames,
            size=size,
            seed=seed * 100_003 + index,
        )
        video = write_video(array, directory / f"clip{index:03d}.mp4", fps=8)
        condition = directory / f"condition{index:03d}.png"
        Image.fromarray(array[0]).save(condition)
        labels = {
            "visual_appeal": 1 + 4 * (brightness - 0.25) / 0.75,
            "visual_motion": 1 + 4 * speed / (2.5 * 16 / frames),
            "image_consistency": 5 - 4 * drift,
            "visual_smoothness": min(5.0, max(1.0, rng.gauss(3.0, 0.8))),
            "text_consistency": min(5.0, max(1.0, rng.gauss(3.0, 0.8))),
            "character_consistency": min(5.0, max(1.0, rng.gauss(3.0, 0.8))),
        }
        clips.append(
            SyntheticClip(
                index,
                video,
                condition,
                PROMPTS[index % len(PROMPTS)],
                labels,
                brightness,
                speed,
                drift,
            )
        )
    return clips
