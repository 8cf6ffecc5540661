"""Stored media as local files for the ML core, on every storage backend, and where run artefacts go.

``local_path`` is the one way job code turns a storage name into a path: the file itself on local
disk, otherwise (S3) a copy cached under the artifacts root, written to a temporary name and
moved into place only when complete, so a half-downloaded copy is never read.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage


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
        return default_storage.path(name)
    except NotImplementedError:  # remote storage (S3): a verified local copy
        pass
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
