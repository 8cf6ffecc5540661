"""Production defaults: DEBUG off, no default secret key, HTTPS settings, `check --deploy`, login
lockout (django-axes), write throttling, token auth, body size limits, schema behind login, and
error pages that never show Django's debug page."""

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.hashers import MD5PasswordHasher, get_hasher
from django.contrib.auth.models import User
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import include, path
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from labelhub.security import token_digest
from tests.conftest import make_user

ROOT = Path(django_settings.BASE_DIR)
_PRODUCTION_ENV = {"LABELHUB_DEBUG", "LABELHUB_SECRET_KEY", "LABELHUB_HTTPS"}


def boom(request):
    raise RuntimeError("secret internals: do not show me")


# This module doubles as a URLconf (pytest.mark.urls) with a view that fails.
urlpatterns = [path("boom/", boom), path("", include("labelhub.urls"))]


def _settings_in_subprocess(env: dict[str, str], code: str) -> subprocess.CompletedProcess:
    # As CI runs it: not inheriting what other tests set in this process (Playwright's
    # DJANGO_ALLOW_ASYNC_UNSAFE, which the deploy check rightly refuses).
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in _PRODUCTION_ENV and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "labelhub.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_refuses_to_start_with_the_default_secret_key():
    proc = _settings_in_subprocess({}, "import django; django.setup()")
    assert proc.returncode != 0
    assert "ImproperlyConfigured" in proc.stderr and "LABELHUB_SECRET_KEY" in proc.stderr


def test_production_defaults_are_secure_and_the_proxy_header_is_opt_in():
    code = (
        "import json; from labelhub import settings as s; print(json.dumps({k: getattr(s, k, None)"
        " for k in ['DEBUG', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_SSL_REDIRECT',"
        " 'SECURE_HSTS_SECONDS', 'SECURE_PROXY_SSL_HEADER']}))"
    )
    key = {"LABELHUB_SECRET_KEY": "x" * 60}
    values = json.loads(_settings_in_subprocess(key, code).stdout)
    assert values == {
        "DEBUG": False,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 365 * 24 * 3600,
        "SECURE_PROXY_SSL_HEADER": None,
    }
    behind_proxy = _settings_in_subprocess({**key, "LABELHUB_PROXY_SSL_HEADER": "1"}, code)
    assert json.loads(behind_proxy.stdout)["SECURE_PROXY_SSL_HEADER"] == [
        "HTTP_X_FORWARDED_PROTO",
        "https",
    ]
    demo = json.loads(_settings_in_subprocess({"LABELHUB_DEBUG": "1"}, code).stdout)
    assert demo["DEBUG"] is True and demo["SESSION_COOKIE_SECURE"] is False


def test_check_deploy_passes_with_the_documented_production_env():
    # As CI runs it: not inheriting what other tests set in this process (Playwright's
    # DJANGO_ALLOW_ASYNC_UNSAFE, which the deploy check rightly refuses).
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in _PRODUCTION_ENV and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    proc = subprocess.run(
        ["bash", "scripts/check_deploy.sh"],
        cwd=ROOT,
        env=base,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "System check identified no issues" in proc.stdout


@pytest.mark.django_db
def test_schema_requires_login(annotator):
    client = APIClient()
    assert client.get("/api/schema/").status_code in (401, 403)
    client.force_authenticate(annotator)
    response = client.get("/api/schema/")
    assert response.status_code == 200 and b"/api/clips/{clip_id}/ratings/" in response.content


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_error_pages_never_show_the_debug_page(settings, client):
    assert settings.DEBUG is False
    missing = client.get("/no/such/page/")
    assert missing.status_code == 404
    assert b"Not found" in missing.content and b"URLconf" not in missing.content

    client.raise_request_exception = False
    failed = client.get("/boom/")
    assert failed.status_code == 500
    assert b"Server error" in failed.content
    assert b"secret internals" not in failed.content and b"Traceback" not in failed.content


def _basic(username: str, password: str) -> dict:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


@pytest.mark.django_db
def test_basic_auth_failures_lock_the_username_from_any_ip(annotator, lead):
    client = APIClient()
    limit = django_settings.AXES_FAILURE_LIMIT
    for i in range(limit):
        wrong = client.get("/api/me/", REMOTE_ADDR=f"10.0.0.{i + 1}", **_basic("anna", "nope"))
        assert wrong.status_code in (403, 429)  # 403: DRF's answer when session auth comes first
    # The right password no longer helps, from a new address; another user there is unaffected.
    locked = client.get("/api/me/", REMOTE_ADDR="10.0.1.1", **_basic("anna", "pw-anna"))
    assert locked.status_code == 429
    assert client.get("/api/me/", REMOTE_ADDR="10.0.1.1", **_basic("lena", "pw-lena")).json() == {
        "username": "lena",
        "roles": ["lead"],
    }


@pytest.mark.django_db
def test_login_failures_lock_the_ip_for_every_username(client, annotator):
    limit = django_settings.AXES_FAILURE_LIMIT
    statuses = [
        client.post(
            "/accounts/login/", {"username": f"guess{i}", "password": "x"}, REMOTE_ADDR="10.9.9.9"
        ).status_code
        for i in range(limit)
    ]
    assert statuses == [200] * (limit - 1) + [429]  # the form with its error, then locked
    locked = client.post(
        "/accounts/login/", {"username": "anna", "password": "pw-anna"}, REMOTE_ADDR="10.9.9.9"
    )
    assert locked.status_code == 429
    elsewhere = client.post(
        "/accounts/login/", {"username": "anna", "password": "pw-anna"}, REMOTE_ADDR="10.9.9.10"
    )
    assert elsewhere.status_code == 302


class CountingHasher(MD5PasswordHasher):
    """The test hasher, counting password checks (class-level, reset by the test)."""

    algorithm = "counting_md5"
    checks = 0

    def verify(self, password, encoded):
        type(self).checks += 1
        return super().verify(password, encoded)


@pytest.mark.django_db
def test_token_auth_checks_the_password_once_and_stores_only_a_digest(settings):
    settings.PASSWORD_HASHERS = ["tests.test_production_settings.CountingHasher"]
    counting = type(get_hasher("counting_md5"))  # the class Django loaded, whatever its module
    make_user("tara", "annotator")
    counting.checks = 0
    client = APIClient()

    for _ in range(3):
        assert client.get("/api/me/", **_basic("tara", "pw-tara")).status_code == 200
    assert counting.checks == 3  # basic auth: one hash per request

    token = client.post("/api/auth/token/", {"username": "tara", "password": "pw-tara"})
    assert token.status_code == 200
    key = token.json()["token"]
    counting.checks = 0
    for _ in range(5):
        me = client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}")
        assert me.status_code == 200 and me.json()["username"] == "tara"
    assert counting.checks == 0
    assert client.get("/api/me/", HTTP_AUTHORIZATION="Token not-a-token").status_code == 403
    # the table holds a digest: the stored value is no token
    stored = Token.objects.get(user__username="tara").key
    assert stored != key and stored == token_digest(key)
    assert client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {stored}").status_code == 403
    # asking again gives a new token and retires the old one
    again = client.post("/api/auth/token/", {"username": "tara", "password": "pw-tara"})
    new_key = again.json()["token"]
    assert new_key != key and Token.objects.filter(user__username="tara").count() == 1
    assert client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 403
    assert client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {new_key}").status_code == 200
    out = io.StringIO()
    call_command("issue_token", "tara", stdout=out)
    from_command = out.getvalue().strip()
    assert client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {from_command}").status_code == 200
    assert client.get("/api/me/", HTTP_AUTHORIZATION=f"Token {new_key}").status_code == 403
    with pytest.raises(CommandError, match="no active user named 'nobody'"):
        call_command("issue_token", "nobody")
    bad = client.post("/api/auth/token/", {"username": "tara", "password": "wrong"})
    assert bad.status_code == 400 and "token" not in bad.json()


@pytest.mark.django_db
def test_writes_are_throttled_per_user_and_reads_are_not(settings, annotator):
    settings.LABELHUB_WRITE_RATE = "3/minute"
    cache.clear()
    client = APIClient()
    client.force_authenticate(annotator)
    statuses = [client.post("/api/pairwise/next/", {}, format="json").status_code for _ in range(4)]
    assert statuses[:3] == [204, 204, 204] and statuses[3] == 429
    assert all(client.get("/api/me/").status_code == 200 for _ in range(5))
    other = APIClient()
    other.force_authenticate(make_user("otto", "annotator"))
    assert other.post("/api/pairwise/next/", {}, format="json").status_code == 204
    cache.clear()


@pytest.mark.django_db
def test_request_bodies_have_a_size_limit(settings, annotator, lead):
    client = APIClient()
    client.force_authenticate(annotator)
    nested = client.post(
        "/api/pairwise/next/", "[" * 50_000 + "]" * 50_000, content_type="application/json"
    )
    assert nested.status_code == 400 and "nested too deeply" in nested.json()["detail"]

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    big = client.post("/api/pairwise/next/", {"exclude": [1] * 1000}, format="json")
    assert big.status_code == 413 and "at most 1000 bytes" in big.json()["detail"]

    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
    settings.LABELHUB_MAX_REQUEST_BYTES = 10_000
    client.force_authenticate(lead)
    upload = SimpleUploadedFile("m.jsonl", b'{"video": "a.mp4"}\n' * 1000)
    too_big = client.post("/api/imports/", {"manifest": upload}, format="multipart")
    assert too_big.status_code == 413
    garbled = client.get("/api/me/", CONTENT_LENGTH="1" * 5000)
    assert garbled.status_code == 413
    assert client.get("/api/me/", CONTENT_LENGTH="-5").status_code == 400


@pytest.mark.django_db(transaction=True)
def test_demo_superuser_only_with_debug(settings):
    settings.DEBUG = False
    from django.core.management import call_command

    call_command("seed_demo", "--no-ratings")
    admin = User.objects.get(username="admin")
    assert not admin.is_superuser and not admin.is_staff
    assert admin.groups.filter(name="admin").exists()

    settings.DEBUG = True
    call_command("seed_demo", "--no-ratings")
    admin.refresh_from_db()
    assert admin.is_superuser and admin.is_staff
