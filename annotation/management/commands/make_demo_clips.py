"""Render the demo clips: short anime-like videos and a manifest for ``import_clips``.

Each demo condition is one first frame + one prompt: a flat-colour cartoon character (outlines,
big eyes) over a painted gradient background, doing one motion (standing, walking, jumping,
waving). Every condition gets a clean "ground_truth" clip and two clips from made-up "generators"
whose artefacts imitate real ones (jitter, colour drift, blur, stutter, a morphing face), so each
condition has clips to compare. Output is deterministic: same files, same bytes, every run.

The rendering below is plain numpy + Pillow, encoded by ffmpeg (no Django), so tests can call it directly.
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT, FPS, SECONDS = 480, 320, 16, 2.5
FRAMES = int(FPS * SECONDS)
SUPERSAMPLE = 2  # draw at 2x and downsample: cheap anti-aliased outlines
OUTLINE = (28, 22, 30)
DEMO_ROUND = "demo-round-1"
MANIFEST_NAME = "manifest.jsonl"


@dataclass(frozen=True)
class Character:
    name: str
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    eyes: tuple[int, int, int]
    outfit: tuple[int, int, int]
    accent: tuple[int, int, int]  # ribbon / hood trim


@dataclass(frozen=True)
class Scene:
    name: str
    sky_top: tuple[int, int, int]
    sky_bottom: tuple[int, int, int]
    ground: tuple[int, int, int]
    blobs: tuple[tuple[int, int, int], ...]  # colours of the painted clouds / trees / petals
    sun: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Condition:
    slug: str
    character: Character
    scene: Scene
    motion: str  # still | walk | jump | wave
    prompt: str
    generators: tuple[str, ...] = field(default=("hailuo", "vidu"))


HANA = Character(
    "Hana",
    skin=(255, 224, 204),
    hair=(52, 40, 70),
    eyes=(96, 60, 160),
    outfit=(236, 240, 250),
    accent=(220, 40, 60),
)
KAI = Character(
    "Kai",
    skin=(246, 210, 180),
    hair=(240, 140, 50),
    eyes=(40, 120, 90),
    outfit=(60, 110, 200),
    accent=(250, 250, 250),
)

SUNSET = Scene(
    "sunset meadow",
    (250, 150, 110),
    (255, 220, 160),
    (120, 170, 90),
    ((255, 190, 150), (250, 170, 170), (90, 140, 80)),
    sun=(255, 240, 200),
)
BLUE_FIELD = Scene(
    "blue-sky field",
    (90, 160, 240),
    (200, 230, 255),
    (110, 190, 100),
    ((255, 255, 255), (240, 248, 255), (80, 150, 80)),
)
NIGHT_ROOF = Scene(
    "night rooftop",
    (20, 24, 70),
    (70, 60, 130),
    (60, 60, 80),
    ((255, 250, 220), (120, 110, 170), (50, 50, 70)),
    sun=(250, 245, 210),
)
SAKURA_PARK = Scene(
    "cherry-blossom park",
    (170, 210, 250),
    (250, 225, 235),
    (140, 200, 120),
    ((255, 190, 210), (250, 170, 200), (120, 90, 80)),
)

CONDITIONS: tuple[Condition, ...] = (
    Condition(
        "hana-still",
        HANA,
        SUNSET,
        "still",
        "Anime girl with dark hair and a red ribbon stands still in a sunset meadow, "
        "blinking as her hair sways gently in the breeze.",
        ("hailuo", "cogvideox"),
    ),
    Condition(
        "kai-walk",
        KAI,
        BLUE_FIELD,
        "walk",
        "Anime boy with orange hair in a blue hoodie walks from left to right across a "
        "green field under a bright blue sky.",
        ("hailuo", "vidu"),
    ),
    Condition(
        "hana-jump",
        HANA,
        NIGHT_ROOF,
        "jump",
        "Anime girl with a red ribbon jumps twice on a rooftop at night under a full "
        "moon, landing softly.",
        ("vidu", "cogvideox"),
    ),
    Condition(
        "kai-wave",
        KAI,
        SAKURA_PARK,
        "wave",
        "Anime boy in a blue hoodie smiles and waves his right hand at the camera in a "
        "cherry-blossom park.",
        ("hailuo", "cogvideox"),
    ),
)

# What each made-up generator gets wrong (0 = clean). The numbers are tuned to be visible.
GENERATOR_ARTEFACTS: dict[str, dict[str, float]] = {
    "ground_truth": {},
    "hailuo": {"jitter": 1.5, "flicker": 0.04},
    "vidu": {"drift": 0.35, "blur": 0.8},
    "cogvideox": {"jitter": 3.0, "blur": 1.8, "stutter": 1.0, "morph": 0.35},
}


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


def render_frames(condition: Condition, generator: str) -> list[np.ndarray]:
    """The RGB frames (H x W x 3, uint8) of one clip: a condition as one generator renders it."""
    artefacts = GENERATOR_ARTEFACTS[generator]
    scene_rng = np.random.default_rng(abs(hash_text(condition.slug)) % (2**32))
    # Each generator's noise has its own seed so two generators never share artefacts.
    noise_rng = np.random.default_rng(abs(hash_text(condition.slug + generator)) % (2**32))
    background = _background(condition.scene, scene_rng)
    frames: list[np.ndarray] = []
    previous: np.ndarray | None = None
    for index in range(FRAMES):
        t = index / FRAMES
        if previous is not None and artefacts.get("stutter") and index % 5 == 4:
            frames.append(previous)  # a dropped frame: the generator repeats itself
            continue
        image = background.copy()
        draw = ImageDraw.Draw(image)
        pose = _pose(condition.motion, t)
        _character(
            draw,
            condition.character,
            ground=HEIGHT * SUPERSAMPLE * 0.9,
            morph=artefacts.get("morph", 0.0) * math.sin(t * math.pi),
            **pose,
        )
        image = image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)
        if artefacts.get("blur"):
            image = image.filter(ImageFilter.GaussianBlur(artefacts["blur"] * (0.6 + t)))
        frame = np.asarray(image, dtype=np.float32)
        if artefacts.get("drift"):  # colours wander away from the first frame
            gain = 1.0 + artefacts["drift"] * t * np.array([0.5, -0.3, -0.6], np.float32)
            frame = frame * gain
        if artefacts.get("flicker"):
            frame = frame * (1.0 + float(noise_rng.normal(0, artefacts["flicker"])))
        if artefacts.get("jitter"):
            dx, dy = (int(round(v)) for v in noise_rng.normal(0, artefacts["jitter"], 2))
            frame = np.roll(frame, (dy, dx), axis=(0, 1))
        previous = np.clip(frame, 0, 255).astype(np.uint8)
        frames.append(previous)
    return frames


def hash_text(text: str) -> int:
    """A stable hash (Python's ``hash`` is salted per process)."""
    value = 2166136261
    for byte in text.encode():
        value = ((value ^ byte) * 16777619) % (2**32)
    return value


def write_mp4(frames: list[np.ndarray], path: Path, *, fps: int = FPS) -> None:
    """Encode RGB frames to H.264 MP4 by piping raw frames into ffmpeg (one process per clip).

    A fresh single-threaded, bit-exact encoder per clip makes the bytes repeatable; in-process
    encoders (PyAV) carried state from one clip to the next and changed the output.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    height, width = frames[0].shape[:2]
    command = [
        "ffmpeg",
        "-v",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{width}x{height}",
        "-r",
        str(fps),
        "-i",
        "-",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "20",
        "-threads",
        "1",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        "-map_metadata",
        "-1",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        str(tmp),
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
    return image.resize((WIDTH, HEIGHT), Image.Resampling.LANCZOS)


def render_demo_set(out_dir: Path, *, round_name: str = DEMO_ROUND, force: bool = False) -> Path:
    """Render every demo clip, first frame and character sheet under ``out_dir``; return the manifest.

    Files that already exist are kept unless ``force``; the manifest names them relative to itself.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for condition in CONDITIONS:
        first_frame = out_dir / "conditions" / f"{condition.slug}.png"
        sheet = out_dir / "characters" / f"{condition.character.name.lower()}.png"
        if force or not sheet.exists():
            sheet.parent.mkdir(parents=True, exist_ok=True)
            character_sheet(condition.character).save(sheet, optimize=False)
        for generator in ("ground_truth", *condition.generators):
            video = out_dir / "clips" / f"{condition.slug}--{generator}.mp4"
            if force or not video.exists() or not first_frame.exists():
                frames = render_frames(condition, generator)
                write_mp4(frames, video)
                if generator == "ground_truth":
                    first_frame.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(frames[0]).save(first_frame, optimize=False)
            rows.append(
                {
                    "video": str(video.relative_to(out_dir)),
                    "prompt": condition.prompt,
                    "first_frame": str(first_frame.relative_to(out_dir)),
                    "character_reference": str(sheet.relative_to(out_dir)),
                    "source": generator,
                    "round": round_name,
                }
            )
    manifest = out_dir / MANIFEST_NAME
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return manifest


def default_demo_dir() -> Path:
    return Path(settings.LABELHUB_IMPORT_ROOTS[0]) / "demo"


class Command(BaseCommand):
    help = "Render the demo clips (real H.264 MP4s) and a manifest for import_clips."

    def add_arguments(self, parser):
        parser.add_argument(
            "--out", type=Path, default=None, help="Folder (default: first import root/demo)"
        )
        parser.add_argument(
            "--round", default=DEMO_ROUND, help="Round name written in the manifest"
        )
        parser.add_argument(
            "--force", action="store_true", help="Re-render files that already exist"
        )

    def handle(self, *args, out: Path | None, round: str, force: bool, **options):
        manifest = render_demo_set(out or default_demo_dir(), round_name=round, force=force)
        count = sum(1 for _ in manifest.open(encoding="utf-8"))
        self.stdout.write(f"{count} demo clips; manifest: {manifest}")
