"""Shared fixtures: users with roles, rounds, and small real video files made with ffmpeg."""

import subprocess
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from annotation.models import Clip, Round
from annotation.services.ingest import import_rows
from labelhub.roles import ROLES
from tests.toy import synthetic_conditions


def client_for(user) -> Client:
    """A browser session logged in as ``user``."""
    client = Client()
    client.force_login(user)
    return client


def make_user(username: str, *roles: str) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username)
    for role in roles:
        group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(group)
    return user


@pytest.fixture
def role_groups(db):
    return {role: Group.objects.get_or_create(name=role)[0] for role in ROLES}


@pytest.fixture
def annotator(db):
    return make_user("anna", "annotator")


@pytest.fixture
def lead(db):
    return make_user("lena", "lead")


@pytest.fixture
def admin_user(db):
    return make_user("adam", "admin")


def render_test_video(
    path: Path,
    *,
    seconds: float = 1.0,
    fps: int = 8,
    size: str = "64x48",
    source: str = "testsrc2",
    extra_filter: str | None = None,
) -> Path:
    """Write a real H.264 MP4 from an ffmpeg test source (lavfi)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    vf = ["-vf", extra_filter] if extra_filter else []
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            f"{source}=size={size}:rate={fps}:duration={seconds}",
            *vf,
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            str(path),
        ],
        check=True,
    )
    return path


@pytest.fixture
def video_factory(tmp_path):
    counter = {"n": 0}

    def make(name: str | None = None, **kwargs) -> Path:
        counter["n"] += 1
        return render_test_video(tmp_path / (name or f"clip{counter['n']}.mp4"), **kwargs)

    return make


@pytest.fixture(autouse=True)
def isolated_media(settings, tmp_path_factory):
    """Each test writes media into its own folder, so storage assertions see only their own files."""
    media_root = tmp_path_factory.mktemp("media")
    settings.MEDIA_ROOT = media_root
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media_root)},
        },
    }
    return media_root


@pytest.fixture
def seed_round(db, tmp_path, admin_user, video_factory, django_capture_on_commit_callbacks):
    """Four conditions (first frame + prompt) imported with ground-truth clips."""
    Round.objects.create(name="seed")
    conditions = synthetic_conditions(tmp_path / "conditions", count=4, seed=0)
    rows = [
        {
            "video": str(video_factory(seconds=1.0 + 0.125 * i, fps=8, size="32x32")),
            "prompt": c.prompt,
            "first_frame": c.first_frame,
            "round": "seed",
            "source": "ground_truth",
        }
        for i, c in enumerate(conditions)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        import_rows(rows=rows, created_by=admin_user, manifest_name="seed.jsonl")
    assert Clip.objects.filter(round__name="seed", status=Clip.Status.READY).count() == 4
    return Round.objects.get(name="seed")


@pytest.fixture(autouse=True)
def _database_under_playwright(request, monkeypatch):
    """Playwright's sync API runs an event loop in the test's thread; Django then refuses
    database calls as "async". Browser tests (only) check the database between page actions."""
    if request.node.get_closest_marker("browser"):
        monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def two_threads():
    """Torch on two threads (the CI machine's cores) for a test that trains or scores on CPU."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def store_file(local: Path, name: str) -> str:
    """Put a local file into the default storage under ``name``; returns the stored name."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    return default_storage.save(name, ContentFile(local.read_bytes()))
