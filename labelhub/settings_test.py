"""Test settings: the production settings with a test database, a temporary media root and eager
tasks (unless a test starts a worker). Nothing here widens what production allows.

The one import root is a folder of this test session; pytest's tmp_path folders live inside it
(PYTEST_DEBUG_TEMPROOT), so files a test writes are inside the root exactly as a lead's files
must be in production, and any other path (the rest of /tmp included) is outside it.
"""

import os
import tempfile
from pathlib import Path

os.environ.setdefault("LABELHUB_CELERY_EAGER", "1")
# A developer's .env (make demo writes one) is not the tests' configuration: read none unless a
# test names one (tests/test_env_file.py, tests/test_readme_loop.py).
os.environ.setdefault("LABELHUB_ENV_FILE", "")
# DEBUG on at import for the development secret key and plain-HTTP cookies (the live test server
# speaks HTTP); pytest-django still runs every test with DEBUG off. Subprocess workers inherit it.
os.environ.setdefault("LABELHUB_DEBUG", "1")

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
_IMPORT_ROOT = Path(os.environ.setdefault("PYTEST_DEBUG_TEMPROOT", str(_TEST_VAR / "import")))
_IMPORT_ROOT.mkdir(parents=True, exist_ok=True)
LABELHUB_IMPORT_ROOTS = [_IMPORT_ROOT.resolve()]
LABELHUB_ARTIFACTS_ROOT = _TEST_VAR / "artifacts"
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
STATICFILES_DIRS = [BASE_DIR / "static"]
