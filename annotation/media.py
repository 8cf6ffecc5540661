"""Video probing and transcoding with ffmpeg, and still-image checks with Pillow. No Django.

Every file handed to this module is hostile until it passes: each ffprobe/ffmpeg child runs with a
timeout (killed on expiry), a ``file``-only protocol whitelist and, for inputs, an allow-list of
demuxers, so an HLS playlist or concat list named ``clip.mp4`` never reaches a demuxer that would
open other files. Stills are PNG, JPEG or WebP within a pixel limit, re-encoded to PNG.

Every clip is transcoded to constant-frame-rate H.264 MP4 with faststart so it plays and seeks in
every browser (except our own generator's clips, handed over by the trusted entry point, when
``browser_ready`` says they are that already); a poster and, when no first frame is given, the third
frame as condition image.
"""

from __future__ import annotations

import json
import subprocess
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from labelhub.files import sha256_file

__all__ = [
    "ImageLimits",
    "MediaError",
    "ProbeResult",
    "VideoLimits",
    "browser_ready",
    "extract_frame",
    "moov_first",
    "normalise_image",
    "probe_video",
    "sha256_file",
    "transcode_for_browser",
]

# Demuxers a clip may be read with (ffmpeg's names; "mov" is the MP4/MOV family, "matroska" also
# reads WebM). Playlists (hls), concat lists, image2 patterns and everything else are refused.
VIDEO_DEMUXERS = ("mov", "matroska", "avi")
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")


class MediaError(Exception):
    """A file that is not a usable video (or image); the message is shown to the importer."""


@dataclass(frozen=True)
class VideoLimits:
    max_seconds: float
    max_frames: int
    max_pixels: int
    min_side: int
    max_bytes: int
    timeout_seconds: float = 120.0  # per ffprobe/ffmpeg child; it is killed after this


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int
    max_bytes: int


@dataclass(frozen=True)
class ProbeResult:
    width: int
    height: int
    fps: float
    frames: int
    duration: float
    codec: str
    pix_fmt: str = ""
    constant_rate: bool = False  # the stream's average rate is its base rate
    streams: int = 1  # streams in the container (audio, subtitles included)


def _input_args(path: Path) -> list[str]:
    """Options that go before every ``-i``: file protocol only, allowed demuxers only."""
    return [
        "-protocol_whitelist",
        "file",
        "-format_whitelist",
        ",".join(VIDEO_DEMUXERS),
        "-i",
        f"file:{path}",
    ]


def _run_child(args: list[str], *, timeout: float, what: str) -> bytes:
    """Run one ffmpeg/ffprobe child; on timeout it is killed and a MediaError raised."""
    try:
        done = subprocess.run(args, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:  # subprocess.run has already killed the child
        raise MediaError(f"{what} took longer than {timeout:.0f}s and was stopped") from exc
    if done.returncode != 0:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise MediaError(f"{what}: {lines[-1] if lines else 'ffmpeg failed'}")
    return done.stdout


def sniff_container(path: Path) -> str:
    """Name the container from its first bytes, or refuse it with a message that says what it is."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    if head.lstrip().startswith(b"#EXTM3U"):
        raise MediaError("an HLS playlist, not a video file")
    if head.lstrip().startswith(b"ffconcat") or head.lstrip().startswith(b"file "):
        raise MediaError("an ffmpeg concat list, not a video file")
    if head[4:8] in {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot"}:
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff"):
        raise MediaError("an image, not a video")
    raise MediaError(
        "not a readable video: not a container LabelHub accepts (MP4/MOV, Matroska/WebM or AVI)"
    )


def probe_video(path: Path, limits: VideoLimits) -> ProbeResult:
    """Validate that ``path`` holds a decodable video stream within ``limits``."""
    size = path.stat().st_size
    if size == 0:
        raise MediaError("file is empty (0 bytes)")
    if size > limits.max_bytes:
        raise MediaError(f"file is {size} bytes, over the limit of {limits.max_bytes}")
    sniff_container(path)
    out = _run_child(
        [
            "ffprobe",
            "-v",
            "error",
            *_input_args(path),
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ],
        timeout=limits.timeout_seconds,
        what="not a readable video",
    )
    info = json.loads(out or b"{}")
    format_name = info.get("format", {}).get("format_name", "")
    if not any(name in VIDEO_DEMUXERS for name in format_name.split(",")):
        raise MediaError(f"container '{format_name}' is not accepted")
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "video"]
    if not streams:
        raise MediaError("no video stream (audio-only or not a video)")
    stream = streams[0]
    codec = stream.get("codec_name", "")
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if min(width, height) < limits.min_side:
        raise MediaError(
            f"resolution {width}x{height} is below the minimum side of {limits.min_side}px"
        )
    if width * height > limits.max_pixels:
        raise MediaError(
            f"resolution {width}x{height} is over the limit of {limits.max_pixels} pixels"
        )
    rate = stream.get("avg_frame_rate") or stream.get("r_frame_rate") or "0/1"
    try:
        fps = float(Fraction(rate)) if rate not in {"0/0", ""} else 0.0
    except (ValueError, ZeroDivisionError):
        fps = 0.0
    frames = int(stream.get("nb_read_frames") or 0)
    declared = int(stream.get("nb_frames") or 0)
    if declared and frames < declared - 1:
        raise MediaError(f"truncated: only {frames} of {declared} frames decode")
    duration = float(stream.get("duration") or info.get("format", {}).get("duration") or 0.0)
    if frames < 3:
        raise MediaError(f"only {frames} decodable frame(s); a clip needs at least 3")
    if fps <= 0:
        fps = frames / duration if duration > 0 else 0.0
    if fps <= 0:
        raise MediaError("frame rate could not be determined")
    if duration <= 0:
        duration = frames / fps
    if duration > limits.max_seconds:
        raise MediaError(f"duration {duration:.1f}s is over the limit of {limits.max_seconds:.0f}s")
    if frames > limits.max_frames:
        raise MediaError(f"{frames} frames is over the limit of {limits.max_frames}")
    base_rate = stream.get("r_frame_rate") or ""
    return ProbeResult(
        width=width,
        height=height,
        fps=fps,
        frames=frames,
        duration=duration,
        codec=codec,
        pix_fmt=stream.get("pix_fmt", ""),
        constant_rate=bool(base_rate) and base_rate == stream.get("avg_frame_rate"),
        streams=int(info.get("format", {}).get("nb_streams") or 1),
    )


def moov_first(path: Path, *, max_boxes: int = 64) -> bool:
    """Whether an MP4's index (``moov``) comes before its media data (``mdat``): faststart, so a
    browser plays it while it loads. Reads only the top-level box headers."""
    with open(path, "rb") as handle:
        end = handle.seek(0, 2)
        offset = 0
        for _ in range(max_boxes):
            handle.seek(offset)
            header = handle.read(8)
            if len(header) < 8:
                return False
            size, kind = int.from_bytes(header[:4], "big"), header[4:]
            if kind == b"moov":
                return True
            if kind == b"mdat":
                return False
            if size == 1:  # a 64-bit size follows the type
                size = int.from_bytes(handle.read(8), "big")
            if size < 8 or offset + size > end:
                return False
            offset += size
    return False


def browser_ready(path: Path, probe: ProbeResult) -> bool:
    """Whether ``path`` is already what ``transcode_for_browser`` makes: one constant-rate H.264
    yuv420p stream with even sides in an MP4 whose index comes first. Only the trusted hand-over
    of our own generator skips the transcode on this (an upload is always transcoded)."""
    return (
        probe.codec == "h264"
        and probe.pix_fmt == "yuv420p"
        and probe.constant_rate
        and probe.streams == 1
        and probe.width % 2 == 0
        and probe.height % 2 == 0
        and sniff_container(path) == "mov"
        and moov_first(path)
    )


def _ffmpeg(src: Path, output_args: list[str], dst: Path, *, timeout: float, what: str) -> None:
    _run_child(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", *_input_args(src), *output_args, f"file:{dst}"],
        timeout=timeout,
        what=f"{what} failed",
    )
    if not dst.exists() or dst.stat().st_size == 0:
        raise MediaError(f"{what} produced no output")


def transcode_for_browser(src: Path, dst: Path, *, fps: float, timeout: float = 120.0) -> None:
    """Constant-frame-rate H.264 (yuv420p, even dimensions) MP4 with the moov atom up front."""
    rate = round(fps, 3) if fps > 0 else 16
    _ffmpeg(
        src,
        [
            "-map",
            "0:v:0",
            "-vf",
            "scale=trunc(iw/2)*2:trunc(ih/2)*2",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-preset",
            "veryfast",
            "-crf",
            "20",
            "-r",
            str(rate),
            "-fps_mode",
            "cfr",
            "-movflags",
            "+faststart",
            "-an",
            "-f",
            "mp4",
        ],
        dst,
        timeout=timeout,
        what="transcode",
    )


def extract_frame(src: Path, dst: Path, *, index: int, timeout: float = 120.0) -> None:
    """Write frame ``index`` (0-based) of ``src`` as a still image (format from ``dst``'s suffix)."""
    try:
        _ffmpeg(
            src,
            ["-map", "0:v:0", "-vf", f"select=eq(n\\,{index})", "-frames:v", "1"],
            dst,
            timeout=timeout,
            what=f"frame {index} extraction",
        )
    except MediaError as exc:
        if "produced no output" in str(exc):
            raise MediaError(f"the video has no frame {index + 1}") from exc
        raise


def trusted_poster(src: Path, dst: Path) -> None:
    """Write the first frame of one of our own generator's clips as a JPEG, in this process (PyAV):
    no ffmpeg child for a file the platform wrote itself. Hostile files go to ``extract_frame``."""
    import av  # only the ingest worker's trusted path needs it

    with av.open(str(src)) as container:
        frame = next(container.decode(video=0), None)
        if frame is None:
            raise MediaError("the video has no frame 1")
        frame.to_image().save(dst, format="JPEG", quality=90)


def normalise_image(src: Path, dst: Path, limits: ImageLimits) -> tuple[int, int]:
    """Check that ``src`` is a PNG, JPEG or WebP within ``limits`` and write it to ``dst`` as PNG.

    The size is read from the header before any pixel is decoded, so a decompression bomb is
    refused without allocating it. Returns (width, height).
    """
    size = src.stat().st_size
    if size == 0:
        raise MediaError("image file is empty (0 bytes)")
    if size > limits.max_bytes:
        raise MediaError(f"image is {size} bytes, over the limit of {limits.max_bytes}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src, formats=list(IMAGE_FORMATS)) as image:
                width, height = image.size
                if width * height > limits.max_pixels:
                    raise MediaError(
                        f"image is {width}x{height}, over the limit of {limits.max_pixels} pixels"
                    )
                if getattr(image, "n_frames", 1) > 1:
                    image.seek(0)  # an animated WebP/PNG: its first frame is the condition
                image.load()
                mode = (
                    "RGBA"
                    if image.mode in {"RGBA", "LA", "PA"} or "transparency" in (image.info)
                    else "RGB"
                )
                image.convert(mode).save(dst, format="PNG")
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise MediaError(
            f"image is over the limit of {limits.max_pixels} pixels (refused before decoding)"
        ) from exc
    except UnidentifiedImageError as exc:
        raise MediaError(
            "not a PNG, JPEG or WebP image (other formats, SVG included, are refused)"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise MediaError(f"not a readable image: {exc}") from exc
    return width, height
