"""Test settings: the real Postgres and Redis, tasks run eagerly in-process unless a test starts a worker."""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("LABELHUB_CELERY_EAGER", "1")

from labelhub.settings import *  # noqa: E402,F403
from labelhub.settings import BASE_DIR  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
_TEST_VAR = Path(os.environ.get("LABELHUB_TEST_VAR", tempfile.mkdtemp(prefix="labelhub-test-")))
MEDIA_ROOT = _TEST_VAR / "media"
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT)},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
LABELHUB_IMPORT_ROOTS = [(_TEST_VAR / "import").resolve(), Path(tempfile.gettempdir()).resolve()]
LABELHUB_ARTIFACTS_ROOT = _TEST_VAR / "artifacts"
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
STATICFILES_DIRS = [BASE_DIR / "static"]
