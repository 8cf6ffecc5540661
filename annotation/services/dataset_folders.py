"""Dataset folders: a ready export snapshot built as a self-contained folder of videos and labels
(``annotation.dataset_folder`` has the layout), downloadable as one streamed tar.

Requested from the exports page or ``manage.py export_dataset``; built by
``annotation.build_dataset_folder`` on the default queue (or in the command's process): claimed
under a row lock (pending, failed, or running with a silent heartbeat), media copied storage to
storage, metadata and card written, then a file list (``exports/<id>/<folder>.files.jsonl``) the
download streams from. A build whose worker was killed resumes: the files already copied whole are
kept (``sweep_stuck_dataset_folders``, on beat with the snapshot sweeper, sends it back to the
queue). A build that fails (out of disk, a missing source) removes everything it wrote, so a half
folder never sits in storage; the row says why and the page can ask again.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

from django.core.files import File
from django.core.files.storage import default_storage

from annotation.dataset_folder import (
    TarMember,
    copy_stored,
    dataset_card,
    folder_row,
    iter_label_rows,
    stream_tar,
    tar_size,
)
from annotation.models import DatasetFolder, ExportSnapshot
from annotation.services.builds import RowBuild
from labelhub.errors import ServiceError
from labelhub.storage import artifacts_dir, list_objects, on_local_disk

logger = logging.getLogger(__name__)
Status = DatasetFolder.Status
BUILD = RowBuild(
    DatasetFolder,
    task="annotation.build_dataset_folder",
    id_argument="folder_id",
    label="dataset folder",
)


class DatasetFolderError(ServiceError):
    """A dataset folder that cannot be requested or downloaded (a message for the lead)."""


def folder_name(snapshot_id: int, with_originals: bool) -> str:
    """The folder's name: the top directory of the tar, and under ``exports/<id>/``."""
    return f"snapshot-{snapshot_id}-dataset" + ("-originals" if with_originals else "")


def _prefix(snapshot_id: int, with_originals: bool) -> str:
    return f"exports/{snapshot_id}/{folder_name(snapshot_id, with_originals)}"


def request_dataset_folder(
    *, snapshot_id: int, with_originals: bool = False, created_by=None, send: bool = True
) -> DatasetFolder:
    """The dataset folder of a ready snapshot: recorded (once per kind) and, unless it is ready or
    being built, sent to the default queue (``send=False``: the caller builds it)."""
    snapshot = ExportSnapshot.objects.filter(pk=snapshot_id).first()
    if snapshot is None or snapshot.status != ExportSnapshot.Status.READY:
        raise DatasetFolderError(f"snapshot {snapshot_id} is not a ready export snapshot")
    if "labels_jsonl" not in snapshot.files:
        raise DatasetFolderError(f"snapshot {snapshot_id} has no labels.jsonl to build from")
    folder, _created = DatasetFolder.objects.get_or_create(
        snapshot=snapshot,
        with_originals=with_originals,
        defaults={"prefix": _prefix(snapshot_id, with_originals), "created_by": created_by},
    )
    if send and (folder.status in (Status.PENDING, Status.FAILED) or BUILD.abandoned(folder)):
        BUILD.send(folder.pk)
    return folder


def sweep_stuck_dataset_folders() -> list[int]:
    """Send folders whose builder stopped beating back to the queue (they resume); their ids."""
    return BUILD.sweep()


def build_dataset_folder(
    *, folder_id: int, progress: Callable[[str], None] | None = None
) -> DatasetFolder:
    """Build the folder (see the module docstring); a delivery for one that is ready or being
    built by a live worker does nothing. Raises after cleaning up when the build fails."""
    if not BUILD.claim(folder_id):
        return DatasetFolder.objects.get(pk=folder_id)
    folder = DatasetFolder.objects.select_related("snapshot").get(pk=folder_id)
    scratch = artifacts_dir("dataset-scratch") / str(folder_id)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        with BUILD.heartbeat(folder_id):
            totals = _write(folder, scratch, progress or (lambda _message: None))
    except Exception as exc:
        logger.exception("dataset folder %s failed; removing what it wrote", folder_id)
        remove_written(folder)
        BUILD.fail(folder_id, exc)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    BUILD.finish(folder_id, **totals)
    folder.refresh_from_db()
    return folder


def _write(folder: DatasetFolder, scratch: Path, say: Callable[[str], None]) -> dict:
    storage = default_storage
    snapshot = folder.snapshot
    prefix = folder.prefix
    listing = scratch / "files.jsonl"  # path, storage name, size of every file: the tar's members
    metadata = {split: scratch / split / "metadata.jsonl" for split in ("train", "test")}
    for path in metadata.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    counts = {"train": 0, "test": 0}
    placed: set[str] = set()  # a condition image is shared by its clips: copied once
    with ExitStack() as stack:
        files = stack.enter_context(listing.open("w", encoding="utf-8"))
        rows_out = {
            split: stack.enter_context(path.open("w", encoding="utf-8"))
            for split, path in metadata.items()
        }
        for row in iter_label_rows(storage, snapshot.files["labels_jsonl"]["name"]):
            split, meta, copies = folder_row(row, with_originals=folder.with_originals)
            for copy in copies:
                if copy.path in placed:
                    continue
                size = copy_stored(storage, copy.source, f"{prefix}/{copy.path}")
                placed.add(copy.path)
                files.write(json.dumps([copy.path, f"{prefix}/{copy.path}", size]) + "\n")
            rows_out[split].write(json.dumps(meta, ensure_ascii=False) + "\n")
            counts[split] += 1
            if sum(counts.values()) % 100 == 0:
                say(f"{sum(counts.values())} clips")
        for handle in rows_out.values():
            handle.close()
        with storage.open(snapshot.files["card"]["name"], "rb") as handle:
            card = handle.read().decode("utf-8")
        (scratch / "README.md").write_text(
            dataset_card(
                card,
                folder=folder_name(snapshot.pk, folder.with_originals),
                counts=counts,
                originals=folder.with_originals,
            ),
            encoding="utf-8",
        )
        for local, path in [
            (scratch / "README.md", "README.md"),
            (metadata["train"], "train/metadata.jsonl"),
            (metadata["test"], "test/metadata.jsonl"),
        ]:
            _save(local, f"{prefix}/{path}")
            files.write(json.dumps([path, f"{prefix}/{path}", local.stat().st_size]) + "\n")
    _save(listing, f"{prefix}.files.jsonl")
    files_count = sum(1 for _ in iter_members(prefix))
    say(f"{counts['train']} train / {counts['test']} test clips, {files_count} files")
    return {
        "files": files_count,
        "bytes": sum(m.size for m in iter_members(prefix)),
        "archive_bytes": tar_size(iter_members(prefix)),
    }


def _save(local: Path, name: str) -> None:
    if default_storage.exists(name):
        default_storage.delete(name)
    with local.open("rb") as handle:
        stored = default_storage.save(name, File(handle, name=local.name))
    if stored != name or default_storage.size(name) != local.stat().st_size:
        raise OSError(f"{name}: not stored whole")


def iter_members(prefix: str, *, top: str | None = None) -> Iterator[TarMember]:
    """The folder's files as tar members (read from its file list, one line at a time)."""
    top = top or prefix.rsplit("/", 1)[-1]
    with default_storage.open(f"{prefix}.files.jsonl", "rb") as handle:
        for line in handle:
            path, name, size = json.loads(line)
            yield TarMember(f"{top}/{path}", name, int(size))


def remove_written(folder: DatasetFolder) -> None:
    """Delete every file of the folder (and its file list) from storage."""
    if on_local_disk():
        shutil.rmtree(default_storage.path(folder.prefix), ignore_errors=True)
    else:
        for obj in list_objects((folder.prefix,)):
            default_storage.delete(obj.name)
    if default_storage.exists(f"{folder.prefix}.files.jsonl"):
        default_storage.delete(f"{folder.prefix}.files.jsonl")


def dataset_archive(folder_id: int) -> tuple[str, int, Iterator[bytes]]:
    """File name, exact size and byte stream of a ready folder's tar (for the download)."""
    folder = DatasetFolder.objects.filter(pk=folder_id, status=Status.READY).first()
    if folder is None:
        raise DatasetFolderError(f"dataset folder {folder_id} is not ready")
    mtime = int(folder.finished_at.timestamp()) if folder.finished_at else 0
    name = folder.prefix.rsplit("/", 1)[-1] + ".tar"
    chunks = stream_tar(default_storage, iter_members(folder.prefix), mtime=mtime)
    return name, folder.archive_bytes, chunks


def write_archive(folder_id: int, out) -> int:
    """Write a ready folder's tar to a binary file object; returns its size."""
    _name, size, chunks = dataset_archive(folder_id)
    for chunk in chunks:
        out.write(chunk)
    return size
