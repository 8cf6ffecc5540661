"""Local paths for the ML core: stored files (local or S3) and where run artefacts go."""

from __future__ import annotations

import shutil
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage


def artifacts_dir(*parts: str) -> Path:
    """A directory under LABELHUB_ARTIFACTS_ROOT (created); generated videos here may be ingested."""
    path = Path(settings.LABELHUB_ARTIFACTS_ROOT).joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def local_path(name: str) -> str:
    """A local filesystem path for a stored file: the file itself on local storage, otherwise a
    copy cached under the artifacts root (S3)."""
    if not name:
        return ""
    try:
        return default_storage.path(name)
    except NotImplementedError:
        target = artifacts_dir("storage-cache") / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with default_storage.open(name, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return str(target)


def run_dir(run_id: int) -> Path:
    return artifacts_dir("runs", f"run-{run_id}")
