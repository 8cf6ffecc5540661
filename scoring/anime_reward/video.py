"""Video and image files for the ML core (PyAV + PIL): read frames, write browser-ready MP4."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image


def read_video_frames(path: str | Path, *, max_frames: int | None = None) -> np.ndarray:
    """Decode a video to uint8 RGB frames ``[F, H, W, 3]`` (the first ``max_frames`` if given)."""
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"{path}: no video frames decoded")
    return np.stack(frames)


def write_video(frames: np.ndarray, path: str | Path, *, fps: int) -> Path:
    """Write frames (``[F, H, W, 3]``, uint8 or float in [0, 1]) as H.264 yuv420p MP4, faststart."""
    if frames.dtype != np.uint8:
        frames = (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    count, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"H.264 yuv420p needs even sides; got {width}x{height}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # faststart (index first): a browser plays it while loading, so ingest keeps it as it is
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "12", "preset": "veryfast"}
        for index in range(count):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frames[index], format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def read_image(path: str | Path) -> Image.Image:
    """An image file as an RGB PIL image (``frames.read_image_tensor`` gives a model tensor)."""
    with Image.open(path) as image:
        return image.convert("RGB")


def write_image(frame: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(frame).save(path)
    return path
