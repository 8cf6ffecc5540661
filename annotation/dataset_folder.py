"""A snapshot as a self-contained dataset folder, and that folder as one streamed tar.

The layout is the one Hugging Face ``datasets`` loads offline as a video folder (its
``videofolder`` builder: split folders, each with a ``metadata.jsonl`` whose ``file_name`` names a
video relative to it):

```
README.md                      the snapshot's dataset card + how to load this folder
train/metadata.jsonl           one row per clip: the snapshot's label row, media as relative paths
train/videos/<clip_id>.mp4     browser MP4 (H.264, constant frame rate)
train/originals/<clip_id>.<ext>   the uploaded original (only when asked for)
train/conditions/<condition_id>.<ext>   condition image (first frame)
train/characters/<name>        character reference image
test/...                       the same for the test split
```

Rows come from the snapshot's own ``labels.jsonl`` (immutable), read line by line, so the folder
holds exactly the snapshot's clips and the memory used does not grow with their number. Media
are copied storage to storage in chunks; a file already present with the source's size is kept,
so a build that was interrupted resumes where it stopped.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.core.files.storage import Storage

# Storage-name columns of a label row, replaced in metadata.jsonl by paths inside the folder.
MEDIA_COLUMNS = ("video", "original", "condition_image", "character_reference")
COPY_CHUNK = 1 << 20
TAR_BLOCK = tarfile.BLOCKSIZE  # 512
TAR_RECORD = tarfile.RECORDSIZE  # 10240: tar streams end on a record boundary


@dataclass(frozen=True)
class MediaCopy:
    """One file of the folder that comes from storage: source name -> path in the folder."""

    source: str
    path: str  # relative to the folder, posix


def _ext(name: str, default: str) -> str:
    ext = posixpath.splitext(name)[1].lower()
    return ext if ext and len(ext) <= 6 else default


def folder_row(row: dict, *, with_originals: bool) -> tuple[str, dict, list[MediaCopy]]:
    """The split, the metadata.jsonl row and the media copies of one snapshot label row.

    Paths in the metadata are relative to the split folder (where metadata.jsonl is), as the
    video folder loader expects; ``file_name`` is the video, ``original_file_name`` the original
    (a second video column) when asked for.
    """
    split = row["split"]
    if split not in ("train", "test"):
        raise ValueError(f"clip {row.get('clip_id')}: unknown split {split!r}")
    clip_id, condition_id = int(row["clip_id"]), int(row["condition_id"])
    copies: list[MediaCopy] = []

    def place(source: str, relative: str) -> str:
        copies.append(MediaCopy(source, f"{split}/{relative}"))
        return relative

    meta = {"file_name": place(row["video"], f"videos/{clip_id}.mp4")}
    if with_originals and row.get("original"):
        original = f"originals/{clip_id}{_ext(row['original'], '.mp4')}"
        meta["original_file_name"] = place(row["original"], original)
    image = row.get("condition_image") or ""
    meta["condition_image"] = (
        place(image, f"conditions/{condition_id}{_ext(image, '.png')}") if image else ""
    )
    reference = row.get("character_reference") or ""
    meta["character_reference"] = (
        place(reference, f"characters/{posixpath.basename(reference)}") if reference else ""
    )
    meta.update({k: v for k, v in row.items() if k not in MEDIA_COLUMNS})
    return split, meta, copies


def iter_label_rows(storage: Storage, name: str) -> Iterator[dict]:
    """The rows of a stored ``labels.jsonl``, one at a time."""
    with storage.open(name, "rb") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def copy_stored(storage: Storage, source: str, target: str) -> int:
    """Copy ``source`` to ``target`` in the same storage, in chunks; keep a complete earlier copy
    (same size: a resumed build). Returns the bytes of the target."""
    size = storage.size(source)
    if storage.exists(target):
        if storage.size(target) == size:
            return size
        storage.delete(target)  # a partial copy from an interrupted build
    with storage.open(source, "rb") as handle:
        stored = storage.save(target, handle)
    if stored != target:
        raise OSError(f"{target}: stored as {stored}")
    written = storage.size(target)
    if written != size:
        raise OSError(f"{target}: copied {written} of {size} bytes")
    return size


def dataset_card(
    snapshot_card: str, *, folder: str, counts: dict[str, int], originals: bool
) -> str:
    """The snapshot's card with a section on this folder and how to load it offline."""
    original_line = (
        "- `train/originals/`, `test/originals/`: the uploaded originals "
        "(column `original`, a second video column)\n"
        if originals
        else ""
    )
    return f"""{snapshot_card.rstrip()}

## This folder: the videos with their labels

A self-contained copy of the snapshot above: every clip's video beside its label row, in the
layout Hugging Face `datasets` loads offline as a video folder, split into `train`
({counts.get("train", 0)} clips) and `test` ({counts.get("test", 0)} clips) as the snapshot's
grouped split says.

- `train/metadata.jsonl`, `test/metadata.jsonl`: one row per clip, the columns above, with the
  media as paths relative to the split folder: `file_name` (the video), `condition_image`,
  `character_reference`
- `train/videos/<clip_id>.mp4`: browser MP4s (H.264, constant frame rate, faststart)
{original_line}- `train/conditions/<condition_id>.png`: condition images (the first frame given to the generator)
- `train/characters/`: character reference images

```python
import datasets
ds = datasets.load_dataset("videofolder", data_dir="{folder}")  # works offline
ds["train"].num_rows, ds["test"].num_rows
# With torchcodec installed, row["video"] decodes as a torchcodec VideoDecoder. Without it,
# take the path (of `video`, and of `original` when the folder has originals) and use PyAV:
paths = ds["test"].cast_column("video", datasets.Video(decode=False))
import av
with av.open(paths[0]["video"]["path"]) as container:
    frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
```

With pandas alone: `pandas.read_json("{folder}/train/metadata.jsonl", lines=True)`.
"""


@dataclass(frozen=True)
class TarMember:
    path: str  # inside the archive
    storage_name: str
    size: int


def _padding(size: int) -> int:
    return -size % TAR_BLOCK


def tar_size(members: Iterable[TarMember]) -> int:
    """The exact size of ``stream_tar`` over these members (USTAR: one header block each)."""
    body = sum(TAR_BLOCK + m.size + _padding(m.size) for m in members) + 2 * TAR_BLOCK
    return body + (-body % TAR_RECORD)


def stream_tar(storage: Storage, members: Iterable[TarMember], *, mtime: int) -> Iterator[bytes]:
    """A tar of stored files, produced chunk by chunk (never a whole file in memory)."""
    total = 0
    for member in members:
        info = tarfile.TarInfo(member.path)
        info.size, info.mtime, info.mode = member.size, mtime, 0o644
        header = info.tobuf(format=tarfile.USTAR_FORMAT)
        total += len(header)
        yield header
        sent = 0
        with storage.open(member.storage_name, "rb") as handle:
            while chunk := handle.read(COPY_CHUNK):
                sent += len(chunk)
                yield chunk
        if sent != member.size:
            raise OSError(f"{member.storage_name}: {sent} bytes, expected {member.size}")
        total += sent
        if pad := _padding(sent):
            total += pad
            yield b"\0" * pad
    end = 2 * TAR_BLOCK
    end += -(total + end) % TAR_RECORD
    yield b"\0" * end
