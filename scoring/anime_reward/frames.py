"""Frame sampling for AnimeReward with PyAV: up to 24 frames uniformly from a clip's first 144.

Frames come back as uint8 tensors at one square size (the preset's ``frame_size``); each encoder
resizes and normalises them on its own device, so a clip is decoded once for all six models.
Size ``NATIVE`` (0, the ``anisora`` preset) keeps each clip at its source resolution and picks its
frames with the released reward code's rule (``release_frame_indices``); such a batch carries the
clips in ``RewardInputs.native`` (clips of one batch may differ in size).
"""

from __future__ import annotations

import os
import shutil
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

MAX_FRAMES = 24
FRAME_WINDOW = 144
NATIVE = 0  # frame size: keep the source resolution, sample frames as the released code does


class ClipDecodeError(Exception):
    """A clip (or its condition image / character reference) could not be read."""


def sample_frame_indices(
    frame_count: int, *, max_frames: int = MAX_FRAMES, window: int = FRAME_WINDOW
) -> list[int]:
    """Indices of up to ``max_frames`` frames spread uniformly over the first ``window`` frames."""
    if frame_count < 1:
        raise ValueError("a clip needs at least one frame")
    span = min(frame_count, window)
    if span <= max_frames:
        return list(range(span))
    return np.linspace(0, span - 1, max_frames).round().astype(int).tolist()


def release_frame_indices(
    frame_count: int, *, max_frames: int = MAX_FRAMES, window: int = FRAME_WINDOW
) -> list[int]:
    """The released reward_infer.py's frames: ``np.arange(0, span, span / max_frames)`` truncated
    to int with span = min(frames, window) when the clip has more than ``max_frames`` frames,
    else every frame (200 frames -> 0, 6, ..., 138; 20 frames -> 0..19)."""
    if frame_count < 1:
        raise ValueError("a clip needs at least one frame")
    if frame_count > max_frames:
        span = min(frame_count, window)
        return np.arange(0, span, span / max_frames).astype(int).tolist()
    return list(range(frame_count))


def read_clip_frames(
    path: str | Path, *, size: int, max_frames: int = MAX_FRAMES, window: int = FRAME_WINDOW
) -> torch.Tensor:
    """Decode the sampled frames of one clip as a (T, 3, size, size) uint8 tensor.

    The first ``window`` frames are decoded (the released code looks at the first 144); only the
    sampled ones are converted and scaled, by swscale inside PyAV. ``size`` ``NATIVE``: frames at
    the source resolution, (T, 3, H, W), picked by ``release_frame_indices`` over the stream's
    frame count (the container's, as the release reads it; the decoded count if it has none).
    """
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipDecodeError(f"{path}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            decoded = []
            for frame in container.decode(stream):
                decoded.append(frame)
                if len(decoded) >= window:
                    break
            if not decoded:
                raise ClipDecodeError(f"{path}: no decodable frames")
            if size == NATIVE:
                count = stream.frames or len(decoded)
                indices = release_frame_indices(count, max_frames=max_frames, window=window)
                picked = [decoded[i] for i in indices if i < len(decoded)]
                arrays = [f.to_ndarray(format="rgb24") for f in picked]
            else:
                indices = sample_frame_indices(len(decoded), max_frames=max_frames, window=window)
                picked = [decoded[i] for i in indices]
                arrays = [f.to_ndarray(format="rgb24", width=size, height=size) for f in picked]
    except ClipDecodeError:
        raise
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise ClipDecodeError(f"{path}: {exc}") from exc
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def read_image(path: str | Path, *, size: int) -> torch.Tensor:
    """One still image (condition image, character reference) as a (3, size, size) uint8 tensor
    (``NATIVE``: as it is, (3, H, W))."""
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB")
            if size != NATIVE:
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            array = np.asarray(rgb, dtype=np.uint8)
    except OSError as exc:
        raise ClipDecodeError(f"{path}: {exc}") from exc
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


@dataclass
class ClipSpec:
    """What AnimeReward needs to know about one clip: plain paths and the prompt."""

    clip_id: int | str
    video_path: str
    condition_image_path: str
    prompt: str
    character_reference_path: str = ""
    character_id: int | str | None = None  # key into the reward model's character gallery


@dataclass
class RewardInputs:
    """A batch of decoded clips, padded to the longest clip (``frame_mask`` marks real frames)."""

    frames: torch.Tensor  # (B, T, 3, S, S) uint8
    frame_mask: torch.Tensor  # (B, T) bool
    condition: torch.Tensor  # (B, 3, S, S) uint8
    reference: torch.Tensor  # (B, 3, S, S) uint8; the condition image when there is no reference
    has_reference: torch.Tensor  # (B,) bool
    prompts: list[str]
    character_ids: list | None = None  # per clip: gallery character id or None
    # NATIVE batches: each clip at its source resolution (``frames`` etc. are then empty)
    native: list[DecodedClip] | None = None

    def __post_init__(self):
        if self.character_ids is None:
            self.character_ids = [None] * len(self.prompts)

    def __len__(self) -> int:
        return len(self.prompts)


@dataclass
class DecodedClip:
    frames: torch.Tensor
    condition: torch.Tensor
    reference: torch.Tensor | None


def decode_clip(
    spec: ClipSpec, *, size: int, max_frames: int = MAX_FRAMES, window: int = FRAME_WINDOW
) -> DecodedClip:
    frames = read_clip_frames(spec.video_path, size=size, max_frames=max_frames, window=window)
    condition = read_image(spec.condition_image_path, size=size)
    reference = (
        read_image(spec.character_reference_path, size=size)
        if spec.character_reference_path
        else None
    )
    return DecodedClip(frames, condition, reference)


def collate(
    decoded: Sequence[DecodedClip],
    prompts: Sequence[str],
    character_ids: Sequence | None = None,
    *,
    native: bool = False,
) -> RewardInputs:
    """Stack decoded clips; short clips are padded by repeating their last frame. ``native``
    (``NATIVE`` decoding, clips of any size): the clips are kept as they are in ``native``."""
    length = max(d.frames.shape[0] for d in decoded)
    if native:
        empty = torch.zeros(len(decoded), 3, 0, 0, dtype=torch.uint8)
        return RewardInputs(
            frames=torch.zeros(len(decoded), length, 3, 0, 0, dtype=torch.uint8),
            frame_mask=torch.stack([torch.arange(length) < d.frames.shape[0] for d in decoded]),
            condition=empty,
            reference=empty,
            has_reference=torch.tensor([d.reference is not None for d in decoded]),
            prompts=list(prompts),
            character_ids=list(character_ids) if character_ids is not None else None,
            native=list(decoded),
        )
    frames, masks = [], []
    for d in decoded:
        pad = length - d.frames.shape[0]
        frames.append(
            torch.cat([d.frames, d.frames[-1:].expand(pad, -1, -1, -1)]) if pad else d.frames
        )
        masks.append(torch.arange(length) < d.frames.shape[0])
    return RewardInputs(
        frames=torch.stack(frames),
        frame_mask=torch.stack(masks),
        condition=torch.stack([d.condition for d in decoded]),
        reference=torch.stack(
            [d.reference if d.reference is not None else d.condition for d in decoded]
        ),
        has_reference=torch.tensor([d.reference is not None for d in decoded]),
        prompts=list(prompts),
        character_ids=list(character_ids) if character_ids is not None else None,
    )


@dataclass
class DecodedBatch:
    specs: list[ClipSpec]  # the clips that decoded, in ``inputs`` order
    inputs: RewardInputs | None  # None when no clip of the batch decoded
    errors: dict  # clip_id -> message for clips that could not be decoded


def iter_decoded_batches(
    specs: Iterable[ClipSpec],
    *,
    size: int,
    batch_size: int,
    workers: int = 4,
    max_frames: int = MAX_FRAMES,
    window: int = FRAME_WINDOW,
) -> Iterator[DecodedBatch]:
    """Decode clips on a thread pool (PyAV releases the GIL) while the caller runs the models.

    A clip that cannot be decoded is reported in ``errors``; the rest of its batch still comes.
    """
    specs = list(specs)

    def load(spec: ClipSpec) -> DecodedClip | ClipDecodeError:
        try:
            return decode_clip(spec, size=size, max_frames=max_frames, window=window)
        except ClipDecodeError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        # Keep about two batches in flight: decoding runs ahead of the models, memory stays bounded.
        ahead = 2 * batch_size + workers
        pending = deque(pool.submit(load, spec) for spec in specs[:ahead])
        queued = len(pending)
        for start in range(0, len(specs), batch_size):
            batch_specs = specs[start : start + batch_size]
            ok_specs, decoded, errors = [], [], {}
            for spec in batch_specs:
                result = pending.popleft().result()
                if queued < len(specs):
                    pending.append(pool.submit(load, specs[queued]))
                    queued += 1
                if isinstance(result, ClipDecodeError):
                    errors[spec.clip_id] = str(result)
                else:
                    ok_specs.append(spec)
                    decoded.append(result)
            inputs = (
                collate(
                    decoded,
                    [s.prompt for s in ok_specs],
                    [s.character_id for s in ok_specs],
                    native=size == NATIVE,
                )
                if decoded
                else None
            )
            yield DecodedBatch(ok_specs, inputs, errors)


class FrameCache:
    """Decoded clips (or anything per clip made of tensors) on disk, one safetensors file each,
    read back per batch: reward fine-tuning keeps frames here at each fine-tuned encoder's input
    size instead of in host memory, so memory does not grow with the number of clips."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.files: dict = {}  # key -> file name (keys may be any hashable: clip ids are not paths)

    def put(self, key, tensors: dict[str, torch.Tensor]) -> None:
        name = self.files.setdefault(key, f"{len(self.files)}.safetensors")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(self.directory / name))

    def get(self, key) -> dict[str, torch.Tensor]:
        return load_file(str(self.directory / self.files[key]))

    def __contains__(self, key) -> bool:
        return key in self.files

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        self.files.clear()


@contextmanager
def cores_shared_with_decoding(device: str | torch.device) -> Iterator[None]:
    """Models on the CPU beside ``iter_decoded_batches``' decode pool: torch gets half the cores.

    Its intra-op threads spin while they wait for work, and on cores the decoders need that
    spinning is lost time: tiny scoring on 2 cores went from 43 to 51 clips/s with one torch
    thread instead of two (``bench/reward_throughput.py``). Does nothing for a GPU."""
    if torch.device(device).type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, min(previous, len(os.sched_getaffinity(0)) // 2)))
    try:
        yield
    finally:
        torch.set_num_threads(previous)
