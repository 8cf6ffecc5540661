"""The demo's clips, rendered here: short anime-like videos, first frames, character sheets and a
manifest for ``import_clips``. Drawn with numpy + Pillow, encoded by ffmpeg.

Each demo condition is one first frame + one prompt: a flat-colour cartoon character (outlines, big
eyes) over a painted gradient background, doing one motion (standing, walking, jumping, waving).
Three characters meet four scenes once each (12 conditions, every first frame and prompt its
own), so the grouped train/test split of an export holds whole conditions out. Every condition gets a
clean ``ground_truth`` clip and one clip from each made-up generator, whose artefacts imitate real
ones (jitter, colour drift, blur, stutter, a morphing face). Output is deterministic: same files,
same bytes, every run.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import subprocess
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT, FPS, SECONDS = 480, 320, 16, 2.5
FRAMES = int(FPS * SECONDS)
SUPERSAMPLE = 2  # draw at 2x and box-downsample: cheap anti-aliased outlines
OUTLINE = (28, 22, 30)
DEMO_ROUND = "demo-round-1"
MANIFEST_NAME = "manifest.jsonl"


@dataclass(frozen=True)
class Character:
    name: str
    description: str  # how the prompt names them
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    eyes: tuple[int, int, int]
    outfit: tuple[int, int, int]
    accent: tuple[int, int, int]  # ribbon / trim


@dataclass(frozen=True)
class Scene:
    slug: str
    phrase: str  # where, in the prompt's words
    sky_top: tuple[int, int, int]
    sky_bottom: tuple[int, int, int]
    ground: tuple[int, int, int]
    blobs: tuple[tuple[int, int, int], ...]  # colours of the painted clouds / trees / petals
    sun: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class DemoCondition:
    slug: str
    character: Character
    scene: Scene
    motion: str  # still | walk | jump | wave
    prompt: str


CHARACTERS: tuple[Character, ...] = (
    Character(
        "Hana",
        "Anime girl with dark hair and a red ribbon",
        skin=(255, 224, 204),
        hair=(52, 40, 70),
        eyes=(96, 60, 160),
        outfit=(236, 240, 250),
        accent=(220, 40, 60),
    ),
    Character(
        "Kai",
        "Anime boy with orange hair in a blue hoodie",
        skin=(246, 210, 180),
        hair=(240, 140, 50),
        eyes=(40, 120, 90),
        outfit=(60, 110, 200),
        accent=(250, 250, 250),
    ),
    Character(
        "Mei",
        "Anime girl with pink hair in a green dress",
        skin=(255, 230, 214),
        hair=(240, 130, 170),
        eyes=(50, 110, 60),
        outfit=(90, 170, 110),
        accent=(250, 210, 70),
    ),
)

SCENES: tuple[Scene, ...] = (
    Scene(
        "sunset",
        "in a sunset meadow",
        (250, 150, 110),
        (255, 220, 160),
        (120, 170, 90),
        ((255, 190, 150), (250, 170, 170), (90, 140, 80)),
        sun=(255, 240, 200),
    ),
    Scene(
        "field",
        "on a green field under a bright blue sky",
        (90, 160, 240),
        (200, 230, 255),
        (110, 190, 100),
        ((255, 255, 255), (240, 248, 255), (80, 150, 80)),
    ),
    Scene(
        "rooftop",
        "on a rooftop at night under a full moon",
        (20, 24, 70),
        (70, 60, 130),
        (60, 60, 80),
        ((255, 250, 220), (120, 110, 170), (50, 50, 70)),
        sun=(250, 245, 210),
    ),
    Scene(
        "sakura",
        "in a cherry-blossom park",
        (170, 210, 250),
        (250, 225, 235),
        (140, 200, 120),
        ((255, 190, 210), (250, 170, 200), (120, 90, 80)),
    ),
)

MOTIONS: dict[str, str] = {
    "still": "stands still, blinking as the hair sways gently in the breeze,",
    "walk": "walks from left to right",
    "jump": "jumps twice, landing softly,",
    "wave": "smiles and waves a hand at the camera",
}


def _conditions() -> tuple[DemoCondition, ...]:
    """Every character in every scene once, the motion following a Latin square: each character
    does all four motions, no two conditions share a first frame or a prompt."""
    motions = list(MOTIONS)
    return tuple(
        DemoCondition(
            slug=f"{character.name.lower()}-{motion}-{scene.slug}",
            character=character,
            scene=scene,
            motion=motion,
            prompt=f"{character.description} {MOTIONS[motion]} {scene.phrase}.",
        )
        for c, character in enumerate(CHARACTERS)
        for s, scene in enumerate(SCENES)
        for motion in [motions[(c + s) % len(motions)]]
    )


CONDITIONS: tuple[DemoCondition, ...] = _conditions()

# What each made-up generator gets wrong (0 = clean). The numbers are tuned to be visible.
GENERATOR_ARTEFACTS: dict[str, dict[str, float]] = {
    "ground_truth": {},
    "hailuo": {"jitter": 1.5, "flicker": 0.04},
    "vidu": {"drift": 0.35, "blur": 0.8},
    "cogvideox": {"jitter": 3.0, "blur": 1.8, "stutter": 1.0, "morph": 0.35},
}
SOURCES: tuple[str, ...] = tuple(GENERATOR_ARTEFACTS)


# --- drawing --------------------------------------------------------------------------------------


def _background(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """A painted backdrop: vertical sky gradient, soft blobs, a ground band with a horizon curve."""
    w, h = WIDTH * SUPERSAMPLE, HEIGHT * SUPERSAMPLE
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    top, bottom = np.array(scene.sky_top, np.float32), np.array(scene.sky_bottom, np.float32)
    sky = np.broadcast_to(top * (1 - t) + bottom * t, (h, w, 3)).copy()
    image = Image.fromarray(sky.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image, "RGBA")
    if scene.sun:
        draw.ellipse((w * 0.72, h * 0.08, w * 0.72 + 90, h * 0.08 + 90), fill=(*scene.sun, 235))
    for _ in range(9):  # painted clouds / blossoms / stars
        colour = scene.blobs[int(rng.integers(0, 2))]
        x, y = float(rng.uniform(0, w)), float(rng.uniform(0, h * 0.5))
        rx, ry = float(rng.uniform(40, 120)), float(rng.uniform(14, 40))
        draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=(*colour, 150))
    horizon = h * 0.68
    xs = np.linspace(0, w, 24)
    ridge = [(float(x), float(horizon - 30 * math.sin(x / w * math.pi * 2 + 0.7))) for x in xs]
    draw.polygon([(0, h), *ridge, (w, h)], fill=(*scene.blobs[2], 255))
    draw.rectangle((0, horizon + 30, w, h), fill=(*scene.ground, 255))
    image = image.filter(ImageFilter.GaussianBlur(3))  # soft, painted look behind crisp lines
    return image


def _limb(draw: ImageDraw.ImageDraw, start, end, width: float, colour) -> None:
    draw.line([start, end], fill=OUTLINE, width=int(width + 6))
    draw.line([start, end], fill=colour, width=int(width))
    for x, y in (start, end):
        r = width / 2
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)


def _character(
    draw: ImageDraw.ImageDraw,
    c: Character,
    *,
    x: float,
    ground: float,
    lift: float,
    squash: float,
    swing: float,
    wave: float | None,
    blink: bool,
    sway: float,
    morph: float,
) -> None:
    """Draw the character with feet at ``ground - lift``; sizes are in supersampled pixels."""
    s = SUPERSAMPLE
    feet = ground - lift
    leg, body_h, head_r = 34 * s, 52 * s * squash, 30 * s * (1 + morph * 0.25)
    hip = feet - leg
    shoulder = hip - body_h * 0.8
    neck = hip - body_h
    head_cy = neck - head_r * 0.85
    # legs (swing in opposite phase), then body, then arms
    for side, phase in ((-1, 1), (1, -1)):
        foot_x = x + side * 8 * s + phase * swing * 14 * s
        _limb(draw, (x + side * 8 * s, hip), (foot_x, feet), 9 * s, c.skin)
        draw.ellipse((foot_x - 8 * s, feet - 4 * s, foot_x + 9 * s, feet + 5 * s), fill=OUTLINE)
    dress = [
        (x - 16 * s, neck),
        (x + 16 * s, neck),
        (x + 26 * s, hip + 6 * s),
        (x - 26 * s, hip + 6 * s),
    ]
    draw.polygon(dress, fill=c.outfit, outline=OUTLINE, width=3 * s)
    draw.line([(x - 20 * s, hip - 4 * s), (x + 20 * s, hip - 4 * s)], fill=c.accent, width=4 * s)
    left_hand = (x - 30 * s - swing * 10 * s, shoulder + 34 * s)
    _limb(draw, (x - 14 * s, shoulder), left_hand, 8 * s, c.skin)
    if wave is None:
        _limb(
            draw,
            (x + 14 * s, shoulder),
            (x + 30 * s + swing * 10 * s, shoulder + 34 * s),
            8 * s,
            c.skin,
        )
    # head: hair behind, face, fringe, eyes, mouth, ribbon
    hx = x + sway * 2 * s
    draw.ellipse(
        (
            hx - head_r - 6 * s,
            head_cy - head_r - 6 * s,
            hx + head_r + 6 * s,
            head_cy + head_r + 14 * s + sway * 3 * s,
        ),
        fill=c.hair,
        outline=OUTLINE,
        width=3 * s,
    )
    draw.ellipse(
        (hx - head_r, head_cy - head_r, hx + head_r, head_cy + head_r),
        fill=c.skin,
        outline=OUTLINE,
        width=3 * s,
    )
    draw.chord(
        (
            hx - head_r - 2 * s,
            head_cy - head_r - 4 * s,
            hx + head_r + 2 * s,
            head_cy + head_r * 0.2,
        ),
        180,
        360,
        fill=c.hair,
        outline=OUTLINE,
        width=3 * s,
    )
    eye_w, eye_h = 7 * s * (1 + morph), 10 * s * (1 - morph * 0.6)
    for side in (-1, 1):
        ex, ey = hx + side * 12 * s, head_cy + 6 * s
        if blink:
            draw.line([(ex - eye_w, ey), (ex + eye_w, ey)], fill=OUTLINE, width=3 * s)
            continue
        draw.ellipse(
            (ex - eye_w, ey - eye_h, ex + eye_w, ey + eye_h),
            fill=(255, 255, 255),
            outline=OUTLINE,
            width=2 * s,
        )
        draw.ellipse(
            (ex - eye_w * 0.7, ey - eye_h * 0.6, ex + eye_w * 0.7, ey + eye_h * 0.9), fill=c.eyes
        )
        draw.ellipse(
            (ex - 2 * s, ey - eye_h * 0.5, ex + 2 * s, ey - eye_h * 0.5 + 4 * s),
            fill=(255, 255, 255),
        )
    draw.arc(
        (hx - 6 * s, head_cy + 12 * s, hx + 6 * s, head_cy + 20 * s),
        20,
        160,
        fill=OUTLINE,
        width=2 * s,
    )
    if wave is not None:  # arm raised beside the head (drawn over the hair), hand sweeping
        hand = (x + 52 * s + wave * 12 * s, shoulder - 44 * s + abs(wave) * 6 * s)
        _limb(draw, (x + 14 * s, shoulder), hand, 8 * s, c.skin)
    bx, by = hx + head_r * 0.7, head_cy - head_r * 0.8
    draw.polygon(
        [(bx, by), (bx + 16 * s, by - 10 * s), (bx + 16 * s, by + 10 * s)],
        fill=c.accent,
        outline=OUTLINE,
    )
    draw.polygon(
        [(bx, by), (bx - 14 * s, by - 12 * s), (bx - 12 * s, by + 8 * s)],
        fill=c.accent,
        outline=OUTLINE,
    )


def _pose(motion: str, t: float) -> dict:
    """Where the character is at time ``t`` in [0, 1) for each motion."""
    s = SUPERSAMPLE
    pose = {
        "x": WIDTH * s * 0.5,
        "lift": 0.0,
        "squash": 1.0,
        "swing": 0.0,
        "wave": None,
        "blink": False,
        "sway": math.sin(t * math.pi * 4),
    }
    if motion == "still":
        pose["squash"] = 1.0 + 0.015 * math.sin(t * math.pi * 6)  # breathing
        pose["blink"] = 0.45 < t < 0.52
    elif motion == "walk":
        pose["x"] = WIDTH * s * (0.2 + 0.6 * t)
        pose["swing"] = math.sin(t * math.pi * 8)
        pose["lift"] = abs(math.sin(t * math.pi * 8)) * 3 * s
    elif motion == "jump":
        phase = (t * 2) % 1.0  # two jumps
        if phase < 0.15:  # crouch
            pose["squash"] = 1.0 - 0.12 * math.sin(phase / 0.15 * math.pi)
        else:
            air = (phase - 0.15) / 0.85
            pose["lift"] = 4 * air * (1 - air) * 70 * s
            pose["swing"] = 0.4 * math.sin(air * math.pi)
    elif motion == "wave":
        pose["wave"] = math.sin(t * math.pi * 6)
        pose["blink"] = 0.7 < t < 0.76
    else:
        raise ValueError(f"unknown motion {motion!r}")
    return pose


def hash_text(text: str) -> int:
    """A stable hash (Python's ``hash`` is salted per process)."""
    value = 2166136261
    for byte in text.encode():
        value = ((value ^ byte) * 16777619) % (2**32)
    return value


def _draw_frames(condition: DemoCondition, *, morph: float) -> list[Image.Image]:
    """The clean frames of a condition at output size; ``morph``: how far the face warps mid-clip."""
    background = _background(condition.scene, np.random.default_rng(hash_text(condition.slug)))
    frames = []
    for index in range(FRAMES):
        t = index / FRAMES
        image = background.copy()
        _character(
            ImageDraw.Draw(image),
            condition.character,
            ground=HEIGHT * SUPERSAMPLE * 0.9,
            morph=morph * math.sin(t * math.pi),
            **_pose(condition.motion, t),
        )
        frames.append(image.reduce(SUPERSAMPLE))
    return frames


def _with_artefacts(
    clean: list[Image.Image], condition: DemoCondition, generator: str
) -> list[np.ndarray]:
    """RGB frames (H x W x 3, uint8): the clean frames as ``generator`` gets them wrong."""
    artefacts = GENERATOR_ARTEFACTS[generator]
    # Each generator's noise has its own seed so two generators never share artefacts.
    noise_rng = np.random.default_rng(hash_text(condition.slug + generator))
    frames: list[np.ndarray] = []
    for index, image in enumerate(clean):
        t = index / FRAMES
        if frames and artefacts.get("stutter") and index % 5 == 4:
            frames.append(frames[-1])  # a dropped frame: the generator repeats itself
            continue
        if artefacts.get("blur"):  # one box pass: looks the same here, a third of a Gaussian's cost
            image = image.filter(ImageFilter.BoxBlur(1.2 * artefacts["blur"] * (0.6 + t)))
        frame = np.asarray(image, dtype=np.float32)
        if artefacts.get("drift"):  # colours wander away from the first frame
            frame = frame * (1.0 + artefacts["drift"] * t * np.array([0.5, -0.3, -0.6], np.float32))
        if artefacts.get("flicker"):
            frame = frame * (1.0 + float(noise_rng.normal(0, artefacts["flicker"])))
        if artefacts.get("jitter"):
            dx, dy = (int(round(v)) for v in noise_rng.normal(0, artefacts["jitter"], 2))
            frame = np.roll(frame, (dy, dx), axis=(0, 1))
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return frames


def render_frames(condition: DemoCondition, generator: str) -> list[np.ndarray]:
    """The RGB frames (H x W x 3, uint8) of one clip: a condition as one generator renders it."""
    morph = GENERATOR_ARTEFACTS[generator].get("morph", 0.0)
    return _with_artefacts(_draw_frames(condition, morph=morph), condition, generator)


def write_mp4(frames: list[np.ndarray], path: Path, *, fps: int = FPS) -> None:
    """Encode RGB frames to H.264 MP4 by piping raw frames into ffmpeg (one process per clip).

    A fresh single-threaded, bit-exact encoder per clip makes the bytes repeatable; in-process
    encoders (PyAV) carried state from one clip to the next and changed the output.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    height, width = frames[0].shape[:2]
    command = [
        *("ffmpeg", "-v", "error", "-y"),
        *("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps)),
        *("-i", "-", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-threads", "1"),
        *("-pix_fmt", "yuv420p", "-movflags", "+faststart", "-map_metadata", "-1"),
        *("-fflags", "+bitexact", "-flags:v", "+bitexact", str(tmp)),
    ]
    subprocess.run(
        command, input=b"".join(f.tobytes() for f in frames), check=True, capture_output=True
    )
    tmp.replace(path)


def character_sheet(character: Character) -> Image.Image:
    """A character reference: the character alone on white, standing."""
    image = Image.new("RGB", (WIDTH * SUPERSAMPLE, HEIGHT * SUPERSAMPLE), (255, 255, 255))
    pose = _pose("still", 0.0)
    _character(
        ImageDraw.Draw(image), character, ground=HEIGHT * SUPERSAMPLE * 0.9, morph=0.0, **pose
    )
    return image.reduce(SUPERSAMPLE)


# --- the demo set ---------------------------------------------------------------------------------


def _files(out_dir: Path, condition: DemoCondition) -> dict[str, Path]:
    files = {source: out_dir / "clips" / f"{condition.slug}--{source}.mp4" for source in SOURCES}
    files["first_frame"] = out_dir / "conditions" / f"{condition.slug}.png"
    files["character_reference"] = (
        out_dir / "characters" / f"{condition.character.name.lower()}.png"
    )
    return files


def _render_condition(out_dir: Path, condition: DemoCondition) -> None:
    """Write one condition's clips and first frame (one clean drawing shared by the sources that
    do not morph the face)."""
    files = _files(out_dir, condition)
    clean = _draw_frames(condition, morph=0.0)
    for source in SOURCES:
        morph = GENERATOR_ARTEFACTS[source].get("morph", 0.0)
        drawn = _draw_frames(condition, morph=morph) if morph else clean
        write_mp4(_with_artefacts(drawn, condition, source), files[source])
    files["first_frame"].parent.mkdir(parents=True, exist_ok=True)
    clean[0].save(files["first_frame"], optimize=False)


def render_demo_set(
    out_dir: Path, *, round_name: str = DEMO_ROUND, force: bool = False, workers: int | None = None
) -> Path:
    """Render every demo clip, first frame and character sheet under ``out_dir``; return the
    manifest (paths relative to it). Files that already exist are kept unless ``force``;
    conditions render in ``workers`` processes (default: one per core)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for character in CHARACTERS:
        sheet = out_dir / "characters" / f"{character.name.lower()}.png"
        if force or not sheet.exists():
            sheet.parent.mkdir(parents=True, exist_ok=True)
            character_sheet(character).save(sheet, optimize=False)
    todo = [
        c for c in CONDITIONS if force or not all(p.exists() for p in _files(out_dir, c).values())
    ]
    workers = min(workers or os.cpu_count() or 1, len(todo))
    if workers > 1:
        # Spawned, not forked: a forked child inherits the parent's pooled broker connections,
        # and kombu's after-fork cleanup then blocks reading a socket the parent still owns.
        spawn = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
            list(pool.map(_render_condition, [out_dir] * len(todo), todo))
    else:
        for condition in todo:
            _render_condition(out_dir, condition)
    rows = []
    for condition in CONDITIONS:
        files = _files(out_dir, condition)
        rows += [
            {
                "video": str(files[source].relative_to(out_dir)),
                "prompt": condition.prompt,
                "first_frame": str(files["first_frame"].relative_to(out_dir)),
                "character_reference": str(files["character_reference"].relative_to(out_dir)),
                "source": source,
                "round": round_name,
            }
            for source in SOURCES
        ]
    manifest = out_dir / MANIFEST_NAME
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return manifest


def default_demo_dir() -> Path:
    """Where the demo set is rendered: inside the first import root, so manifests may name it."""
    return Path(settings.LABELHUB_IMPORT_ROOTS[0]) / "demo"
