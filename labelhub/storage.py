"""Stored media and artefacts, on every storage backend (local disk or S3), in one place.

Writing: a stored object is either absent or complete. On local disk it is written under a
temporary name in ``.tmp/`` on the same filesystem, flushed, and renamed into place; on S3 (a PUT
is all-or-nothing) its size is read back after the upload. A content-addressed name that already
exists is reused only when its size and SHA-256 match; otherwise (a truncated file left by a
crash) it is replaced.

Reading for the ML core: ``local_path`` turns a storage name into a local file (the file itself on
local disk, otherwise a copy cached under the artifacts root, written to a temporary name and
moved into place when complete); ``store_tree``/``local_tree`` do the same for a directory of
files (model checkpoints), so workers on other hosts need only Postgres, Redis and the bucket.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage, default_storage

from labelhub.files import sha256_file

log = logging.getLogger(__name__)

TEMP_FOLDER = ".tmp"  # local-disk writes in progress (same filesystem, so the rename is atomic)
# The folders ingest writes; storage_gc looks only here (exports and others manage their own).
INGEST_FOLDERS = ("originals", "clips", "posters", "conditions", "characters")


class StorageVerifyError(OSError):
    """A stored object does not match what was written."""


@dataclass(frozen=True)
class Stored:
    name: str
    created: bool  # False when an identical object was already there (and is shared)


def _stored_sha256(storage: Storage, name: str) -> str:
    digest = hashlib.sha256()
    with storage.open(name, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def matches(name: str, *, size: int, sha256: str, storage: Storage | None = None) -> bool:
    """True when ``name`` exists with exactly this size and content hash."""
    storage = storage or default_storage
    try:
        if not storage.exists(name) or storage.size(name) != size:
            return False
        return _stored_sha256(storage, name) == sha256
    except OSError:
        return False


def _write_local(storage: FileSystemStorage, local: Path, name: str) -> None:
    final = Path(storage.path(name))
    final.parent.mkdir(parents=True, exist_ok=True)
    temp_dir = Path(storage.location) / TEMP_FOLDER
    temp_dir.mkdir(parents=True, exist_ok=True)
    temp = temp_dir / f"{uuid.uuid4().hex}-{final.name}"
    try:
        with open(local, "rb") as src, open(temp, "xb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())
        os.chmod(temp, 0o644)
        os.replace(temp, final)  # atomic on one filesystem: readers see all of it or nothing
    finally:
        temp.unlink(missing_ok=True)


def _write_remote(storage: Storage, local: Path, name: str) -> str:
    if storage.exists(name):
        storage.delete(name)  # a mismatching object: replaced, never renamed beside
    with open(local, "rb") as handle:
        return storage.save(name, File(handle, name=Path(name).name))


def save_verified(local: Path, name: str, *, sha256: str | None = None) -> Stored:
    """Store ``local`` under ``name`` atomically and verify it; reuse an identical object.

    ``sha256`` is the local file's hash when the caller already has it.
    """
    storage = default_storage
    size = local.stat().st_size
    sha256 = sha256 or sha256_file(local)
    if matches(name, size=size, sha256=sha256, storage=storage):
        return Stored(name=name, created=False)
    if storage.exists(name):
        log.warning("storage object %s does not match its content hash; rewriting it", name)
    if isinstance(storage, FileSystemStorage):
        _write_local(storage, local, name)
        saved = name
    else:
        saved = _write_remote(storage, local, name)
    if storage.size(saved) != size:
        storage.delete(saved)
        raise StorageVerifyError(f"stored {saved} has the wrong size; the write was discarded")
    return Stored(name=saved, created=True)


@dataclass(frozen=True)
class StoredObject:
    name: str
    modified: datetime | None


def list_objects(folders: tuple[str, ...] = INGEST_FOLDERS) -> list[StoredObject]:
    """Every object under ``folders`` (recursively)."""
    storage = default_storage
    found: list[StoredObject] = []

    def walk(folder: str) -> None:
        try:
            dirs, files = storage.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in files:
            path = f"{folder}/{name}"
            try:
                modified = storage.get_modified_time(path)
            except (OSError, NotImplementedError):
                modified = None
            found.append(StoredObject(name=path, modified=modified))
        for sub in dirs:
            walk(f"{folder}/{sub}")

    for folder in folders:
        walk(folder)
    return found


def delete(name: str) -> None:
    default_storage.delete(name)


def artifacts_dir(*parts: str) -> Path:
    """A directory under LABELHUB_ARTIFACTS_ROOT (created)."""
    path = Path(settings.LABELHUB_ARTIFACTS_ROOT).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir(run_id: int) -> Path:
    """Where a run writes its checkpoints, caches and outputs."""
    return artifacts_dir("runs", f"run-{run_id}")


def local_path(name: str) -> str:
    """A local filesystem path for the stored file ``name`` ("" for no file)."""
    if not name:
        return ""
    try:
        path = default_storage.path(name)
        if os.path.exists(path):
            return path
    except NotImplementedError:  # remote storage (S3): a verified local copy
        pass
    # (A storage whose path() names no real file, such as InMemoryStorage, is copied too.)
    target = artifacts_dir("storage-cache") / name
    if target.exists() and target.stat().st_size == default_storage.size(name):
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with default_storage.open(name, "rb") as src, os.fdopen(handle, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(target)


def on_local_disk() -> bool:
    """True when the default storage is a local filesystem (stored files have paths here)."""
    try:
        default_storage.path("")
    except NotImplementedError:
        return False
    return True


def store_tree(local_dir: str | Path, prefix: str) -> str:
    """Store every file under ``local_dir`` as ``prefix/<relative path>``; returns ``prefix``."""
    local_dir = Path(local_dir)
    for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
        save_verified(path, f"{prefix}/{path.relative_to(local_dir).as_posix()}")
    return prefix


def local_tree(prefix: str) -> Path:
    """A local directory holding the files stored under ``prefix`` (see ``store_tree``)."""
    try:
        return Path(default_storage.path(prefix))
    except NotImplementedError:
        pass
    for obj in list_objects((prefix,)):
        local_path(obj.name)
    return artifacts_dir("storage-cache") / prefix
