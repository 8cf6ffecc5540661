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


def _write_clip(frames: np.ndarray, directory: Path, index: int) -> tuple[Path, Path]:
    """A clip's H.264 MP4 (8 fps) and its first frame as the condition image (PNG)."""
    video = write_video(frames, directory / f"clip{index:03d}.mp4", fps=8)
    condition = directory / f"condition{index:03d}.png"
    Image.fromarray(frames[0]).save(condition)
    return video, condition


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
        video, condition = _write_clip(array, directory, index)
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


# --- six rules: one per dimension, for the learning proof (bench/reward_learning.py) -------------

SIX_RULES = {
    "visual_smoothness": "per-frame brightness flicker: larger flicker, lower score",
    "visual_motion": "speed of the coloured square",
    "visual_appeal": "overall brightness",
    "text_consistency": "how far the square's colour is mixed away from the colour the prompt names",
    "image_consistency": "background colour drift away from the condition image",
    "character_consistency": "identity swap: the fraction of frames that show another gallery "
    "character (another stripe layout and stripe colour) instead of the clip's own",
}
# Equidistant in RGB (corners of a cube that are pairwise face-diagonals apart): mixing the named
# colour a fraction m towards any other moves it the same distance, so the label 5 - 4m is one
# monotone function of (prompt, square colour) whichever other colour was drawn.
COLOURS = {
    "red": (0.9, 0.15, 0.15),
    "green": (0.15, 0.9, 0.15),
    "blue": (0.15, 0.15, 0.9),
    "white": (0.9, 0.9, 0.9),
}
# Gallery characters: a stripe layout and the colour axis the stripes swing along. They all
# average to the same tint (the stripes are zero-mean), so a swap hardly moves whole-frame features
# (image or text consistency) while a crop of the character shows which one it is.
CHARACTERS = ("ember-h", "moss-v", "tide-d", "ash-checks")
CHARACTER_COLOURS = {
    "ember-h": (1.0, -0.4, -0.6),
    "moss-v": (-0.6, 1.0, -0.4),
    "tide-d": (-0.4, -0.6, 1.0),
    "ash-checks": (0.75, 0.75, 0.75),
}
MAX_FLICKER, MAX_SWAP, TEXTURE_PERIOD, TEXTURE_CONTRAST, TEXTURE_OFFSET = 0.3, 0.6, 8, 0.2, 0.0


@dataclass
class RuleClip:
    index: int
    video_path: Path
    condition_image_path: Path
    prompt: str
    labels: dict[str, float]  # 1-5 label means, each from its own rule
    character_id: str
    factors: dict[str, float]  # the hidden variables behind the labels
    swap_to: str = ""  # the gallery character the clip swaps to (for ``factors["swap"]`` of it)


def character_texture(character: str, size: int, phase: tuple[int, int]) -> np.ndarray:
    """(size, size, 3) zero-mean colour texture of one gallery character: its stripe layout
    (horizontal, vertical, diagonal, checks) swinging along its colour axis."""
    y, x = np.mgrid[0:size, 0:size]
    y, x = y + phase[0], x + phase[1]
    wave = lambda v: np.sign(np.sin(2 * np.pi * (v + 0.5) / TEXTURE_PERIOD))  # noqa: E731
    index = CHARACTERS.index(character)
    if index == 0:
        pattern = wave(y)
    elif index == 1:
        pattern = wave(x)
    elif index == 2:
        pattern = wave((x + y) / np.sqrt(2))
    else:
        pattern = wave(x) * wave(y)
    axis = np.array(CHARACTER_COLOURS[character])
    return TEXTURE_CONTRAST * (TEXTURE_OFFSET + pattern[..., None]) * axis / np.abs(axis).max()


def render_rule_frames(
    *,
    character: str,
    swap_to: str,
    swap: float,
    brightness: float,
    speed: float,
    drift: float,
    flicker: float,
    colour: tuple[float, float, float],
    frames: int = 16,
    size: int = 64,
    seed: int = 0,
) -> np.ndarray:
    """(T, size, size, 3) uint8: a stripe-textured character filling the frame over a tinted
    background that drifts, a coloured square moving across, brightness flicker, and from frame
    ``(1 - swap) * T`` on the character replaced by ``swap_to``."""
    rng = np.random.default_rng(seed)
    hue = np.array([0.45, 0.55, 0.6])
    target = np.array([0.65, 0.4, 0.45])  # drift shifts the background tint
    phase = (int(rng.integers(0, TEXTURE_PERIOD)), int(rng.integers(0, TEXTURE_PERIOD)))
    own = character_texture(character, size, phase)
    other = character_texture(swap_to, size, phase)
    swap_from = frames - int(round(swap * frames))
    side = size // 3
    y = int(rng.integers(0, size - side))
    x0 = float(rng.integers(0, size // 16 + 1))
    signs = rng.choice([-1.0, 1.0], size=frames)
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        progress = t / max(frames - 1, 1)
        background = (1 - drift * progress) * hue + drift * progress * target
        texture = other if t >= swap_from else own
        frame = background[None, None] + texture
        x = min(int(round(x0 + speed * t)), size - side)
        frame[y : y + side, x : x + side] = colour
        # the condition frame (t = 0) never flickers: it is the image the clip starts from
        frame = frame * brightness * (1 + flicker * signs[t] if t else 1.0)
        out[t] = (frame * 255).clip(0, 255).astype(np.uint8)
    return out


def make_gallery(directory: Path, *, size: int = 64, references: int = 3) -> dict[str, list[str]]:
    """Reference images per character (its texture at a few phases on a neutral tint)."""
    directory.mkdir(parents=True, exist_ok=True)
    gallery = {}
    for character in CHARACTERS:
        paths = []
        for r in range(references):
            texture = character_texture(character, size, (r * 3, r * 5))
            image = np.array([0.5, 0.5, 0.55])[None, None] + texture
            path = directory / f"{character}-{r}.png"
            Image.fromarray((image * 255).clip(0, 255).astype(np.uint8)).save(path)
            paths.append(str(path))
        gallery[character] = paths
    return gallery


def make_rule_clips(
    directory: Path, count: int, *, seed: int = 0, frames: int = 16, size: int = 64
) -> list[RuleClip]:
    """``count`` clips whose six labels each follow one rule (SIX_RULES), factors independent."""
    rng = random.Random(seed)
    names = list(COLOURS)
    clips = []
    max_speed = 2.5 * 16 / frames
    for index in range(count):
        factors = {
            "brightness": rng.uniform(0.45, 1.0),
            "speed": rng.uniform(0.0, max_speed),
            "drift": rng.uniform(0.0, 1.0),
            "flicker": rng.uniform(0.0, MAX_FLICKER),
            "mismatch": rng.uniform(0.0, 1.0),
            "swap": rng.uniform(0.0, MAX_SWAP),
        }
        # every character in every residue class of the index (a split by ``index % 4`` must not
        # hold out one character only)
        character = CHARACTERS[(index + index // len(CHARACTERS)) % len(CHARACTERS)]
        swap_to = rng.choice([c for c in CHARACTERS if c != character])
        named = rng.choice(names)
        other = rng.choice([n for n in names if n != named])
        m = factors["mismatch"]
        colour = tuple(
            (1 - m) * a + m * b for a, b in zip(COLOURS[named], COLOURS[other], strict=True)
        )
        array = render_rule_frames(
            character=character,
            swap_to=swap_to,
            swap=factors["swap"],
            brightness=factors["brightness"],
            speed=factors["speed"],
            drift=factors["drift"],
            flicker=factors["flicker"],
            colour=colour,
            frames=frames,
            size=size,
            seed=seed * 100_003 + index,
        )
        video, condition = _write_clip(array, directory, index)
        labels = {
            "visual_smoothness": 5 - 4 * factors["flicker"] / MAX_FLICKER,
            "visual_motion": 1 + 4 * factors["speed"] / max_speed,
            "visual_appeal": 1 + 4 * (factors["brightness"] - 0.45) / 0.55,
            "text_consistency": 5 - 4 * m,
            "image_consistency": 5 - 4 * factors["drift"],
            "character_consistency": 5 - 4 * factors["swap"] / MAX_SWAP,
        }
        prompt = f"a {named} square crosses the screen"
        clips.append(RuleClip(index, video, condition, prompt, labels, character, factors, swap_to))
    return clips
