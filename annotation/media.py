"""Video probing and transcoding with ffmpeg (through ffmpeg-python). Plain Python, no Django.

Every clip is transcoded to constant-frame-rate H.264 MP4 with faststart so it plays and seeks in
every browser; a poster and, when no first frame is given, the third frame as condition image.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import ffmpeg


class MediaError(Exception):
    """A file that is not a usable video (or image); the message is shown to the importer."""


@dataclass(frozen=True)
class VideoLimits:
    max_seconds: float
    max_frames: int
    max_pixels: int
    min_side: int
    max_bytes: int


@dataclass(frozen=True)
class ProbeResult:
    width: int
    height: int
    fps: float
    frames: int
    duration: float
    codec: str


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _ffmpeg_message(exc: ffmpeg.Error) -> str:
    stderr = (exc.stderr or b"").decode("utf-8", "replace").strip().splitlines()
    return stderr[-1] if stderr else "ffmpeg failed"


def probe_video(path: Path, limits: VideoLimits) -> ProbeResult:
    """Validate that ``path`` holds a decodable video stream within ``limits``."""
    size = path.stat().st_size
    if size == 0:
        raise MediaError("file is empty (0 bytes)")
    if size > limits.max_bytes:
        raise MediaError(f"file is {size} bytes, over the limit of {limits.max_bytes}")
    try:
        info = ffmpeg.probe(str(path), count_frames=None, select_streams="v:0")
    except ffmpeg.Error as exc:
        raise MediaError(f"not a readable video: {_ffmpeg_message(exc)}") from exc
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "video"]
    if not streams:
        raise MediaError("no video stream (audio-only or not a video)")
    stream = streams[0]
    codec = stream.get("codec_name", "")
    if codec in {"png", "mjpeg", "bmp", "gif", "webp"} and info.get("format", {}).get(
        "format_name", ""
    ).endswith("_pipe"):
        raise MediaError(f"an image ({codec}), not a video")
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
    fps = float(Fraction(rate)) if rate not in {"0/0", ""} else 0.0
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
    return ProbeResult(
        width=width, height=height, fps=fps, frames=frames, duration=duration, codec=codec
    )


def _run(stream, what: str) -> None:
    try:
        stream.global_args("-nostdin", "-v", "error").overwrite_output().run(
            capture_stdout=True, capture_stderr=True
        )
    except ffmpeg.Error as exc:
        raise MediaError(f"{what} failed: {_ffmpeg_message(exc)}") from exc


def transcode_for_browser(src: Path, dst: Path, *, fps: float) -> None:
    """Constant-frame-rate H.264 (yuv420p, even dimensions) MP4 with the moov atom up front."""
    rate = round(fps, 3) if fps > 0 else 16
    stream = ffmpeg.input(str(src)).video.filter("scale", "trunc(iw/2)*2", "trunc(ih/2)*2")
    out = ffmpeg.output(
        stream,
        str(dst),
        vcodec="libx264",
        pix_fmt="yuv420p",
        preset="veryfast",
        crf=20,
        r=rate,
        fps_mode="cfr",
        movflags="+faststart",
        an=None,
        f="mp4",
    )
    _run(out, "transcode")
    if not dst.exists() or dst.stat().st_size == 0:
        raise MediaError("transcode produced no output")


def extract_frame(src: Path, dst: Path, *, index: int) -> None:
    """Write frame ``index`` (0-based) of ``src`` as a still image (format from ``dst``'s suffix)."""
    stream = ffmpeg.input(str(src)).video.filter("select", f"eq(n,{index})")
    _run(ffmpeg.output(stream, str(dst), vframes=1), f"frame {index} extraction")
    if not dst.exists() or dst.stat().st_size == 0:
        raise MediaError(f"the video has no frame {index + 1}")


def validate_image(path: Path) -> tuple[int, int]:
    """Check that ``path`` is a decodable image; return (width, height)."""
    if path.stat().st_size == 0:
        raise MediaError("image file is empty (0 bytes)")
    try:
        info = ffmpeg.probe(str(path))
    except ffmpeg.Error as exc:
        raise MediaError(f"not a readable image: {_ffmpeg_message(exc)}") from exc
    streams = [s for s in info.get("streams", []) if s.get("codec_type") == "video"]
    if not streams or not streams[0].get("width"):
        raise MediaError("not an image")
    return int(streams[0]["width"]), int(streams[0]["height"])
