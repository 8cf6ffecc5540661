"""Datasets that leave with their media: a ready snapshot built as a dataset folder (videos,
condition images, character references beside metadata.jsonl) that the real Hugging Face
``datasets`` library loads offline as a video folder with the snapshot's train/test split, on local
disk and on S3; one tar to download with its exact size; an interrupted build resumes; a build
that runs out of disk fails and removes what it wrote."""

import io
import json
import os
import subprocess
import sys
import tarfile
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from PIL import Image

from annotation.models import Clip, DatasetFolder, ImportRow, Round
from annotation.services.assignment import lease_next_clip
from annotation.services.dataset_folders import (
    build_dataset_folder,
    dataset_archive,
    request_dataset_folder,
    sweep_stuck_dataset_folders,
)
from annotation.services.exports import create_snapshot
from annotation.services.ingest import import_rows
from annotation.services.ratings import submit_rating
from labelhub.dimensions import DIMENSION_KEYS
from tests.conftest import make_user, render_test_video

pytest_plugins = ["tests.s3"]

CONDITIONS = 4


def _png(path: Path, colour) -> str:
    Image.new("RGB", (48, 32), colour).save(path)
    return str(path)


def seed_snapshot(tmp_path: Path, lead, capture) -> tuple[Round, object]:
    """Four conditions (first frame, character sheet) x two clips, ingested for real, rated by
    two annotators, exported with half the conditions held out."""
    round_ = Round.objects.create(name="dataset-round")
    character = _png(tmp_path / "character.png", (250, 240, 230))
    rows = []
    for c in range(CONDITIONS):
        first = _png(tmp_path / f"first-{c}.png", (50 * c, 90, 200))
        for k in range(2):
            video = render_test_video(
                tmp_path / f"clip-{c}-{k}.mp4",
                seconds=1.0 + 0.25 * c,
                size="32x32",
                source="testsrc2" if k == 0 else "smptebars",
            )
            rows.append(
                {
                    "video": str(video),
                    "prompt": f"a character waves, take {c}",
                    "first_frame": first,
                    "character_reference": character,
                    "source": "ground_truth" if k == 0 else "hailuo",
                    "round": round_.name,
                }
            )
    with capture(execute=True):
        batch = import_rows(rows=rows, created_by=lead, manifest_name="dataset.jsonl")
    assert not batch.rows.exclude(status=ImportRow.Status.OK).exists()
    for r in range(2):
        rater = make_user(f"dataset-rater-{r}", "annotator")
        while lease := lease_next_clip(round_id=round_.pk, annotator=rater):
            submit_rating(
                clip_id=lease.clip_id,
                annotator=rater,
                scores={k: 1 + (lease.clip_id + r + i) % 5 for i, k in enumerate(DIMENSION_KEYS)},
                seconds_spent=3.0,
                idempotency_key=uuid.uuid4(),
            )
    snapshot = create_snapshot(round_ids=[round_.pk], test_fraction=0.5, created_by=lead)
    assert snapshot.status == snapshot.Status.READY, snapshot.error
    assert snapshot.row_counts["train"] and snapshot.row_counts["test"]
    return round_, snapshot


def load_offline(folder: Path) -> dict:
    """Load the folder with the real ``datasets`` library, offline, in a process of its own; the
    counts per split, one test row, and that row's video decoded with PyAV."""
    script = f"""
import json, av, datasets
ds = datasets.load_dataset("videofolder", data_dir={str(folder)!r})
test = ds["test"]
for name, feature in test.features.items():  # torchcodec decodes; here PyAV does, from the path
    if isinstance(feature, datasets.Video):
        test = test.cast_column(name, datasets.Video(decode=False))
row = test[0]
with av.open(row["video"]["path"]) as container:
    frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
print(json.dumps({{
    "splits": {{name: split.num_rows for name, split in ds.items()}},
    "features": sorted(ds["train"].features),
    "video_feature": type(ds["train"].features["video"]).__name__,
    "row": {{k: v for k, v in row.items() if not isinstance(v, dict)}},
    "frames": len(frames),
    "shape": list(frames[0].shape),
}}))
"""
    env = {
        **os.environ,
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(folder.parent / "hf-home"),
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def extract_archive(folder: DatasetFolder, into: Path) -> Path:
    name, size, chunks = dataset_archive(folder.pk)
    body = b"".join(chunks)
    assert len(body) == size == folder.archive_bytes  # the page's size is the download's
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        tar.extractall(into, filter="data")
    return into / name.removesuffix(".tar")


def check_loads_with_the_snapshot_split(root: Path, snapshot) -> None:
    loaded = load_offline(root)
    assert loaded["splits"] == {
        "train": snapshot.row_counts["train"],
        "test": snapshot.row_counts["test"],
    }
    assert loaded["video_feature"] == "Video"
    assert {"clip_id", "prompt", "split", "condition_image", "character_reference"} <= set(
        loaded["features"]
    )
    row = loaded["row"]
    assert row["split"] == "test"
    clip = Clip.objects.get(pk=row["clip_id"])
    assert loaded["frames"] == clip.frames and loaded["shape"] == [clip.height, clip.width, 3]
    # The condition image and the character sheet are in the folder, next to the metadata.
    image = root / "test" / row["condition_image"]
    assert Image.open(image).size == (48, 32)
    assert (root / "test" / row["character_reference"]).is_file()
    card = (root / "README.md").read_text()
    assert 'load_dataset("videofolder"' in card and "offline" in card


@pytest.mark.django_db(transaction=True)
def test_a_snapshot_folder_loads_offline_as_a_video_dataset_with_its_split(
    tmp_path, lead, django_capture_on_commit_callbacks
):
    _round, snapshot = seed_snapshot(tmp_path, lead, django_capture_on_commit_callbacks)
    out = io.StringIO()
    call_command(
        "export_dataset", snapshot=snapshot.pk, archive=str(tmp_path / "ds.tar"), stdout=out
    )
    folder = DatasetFolder.objects.get(snapshot=snapshot, with_originals=False)
    assert folder.status == DatasetFolder.Status.READY
    assert f"{folder.files} files" in out.getvalue()

    # The folder as stored, loaded where it lies.
    root = Path(default_storage.path(folder.prefix))
    check_loads_with_the_snapshot_split(root, snapshot)
    videos = sorted((root / "train" / "videos").iterdir()) + sorted(
        (root / "test" / "videos").iterdir()
    )
    assert len(videos) == snapshot.row_counts["clips"]
    assert not (root / "train" / "originals").exists()
    # The command's archive holds the same files.
    with tarfile.open(tmp_path / "ds.tar") as tar:
        names = set(tar.getnames())
    assert f"{root.name}/README.md" in names and f"{root.name}/test/metadata.jsonl" in names
    assert len(names) == folder.files
    assert (tmp_path / "ds.tar").stat().st_size == folder.archive_bytes

    # Asking again builds nothing new.
    again = request_dataset_folder(snapshot_id=snapshot.pk, send=False)
    assert again.pk == folder.pk and build_dataset_folder(folder_id=again.pk).status == "ready"


@pytest.mark.django_db(transaction=True)
def test_originals_on_request_and_an_interrupted_build_resumes(
    tmp_path, lead, django_capture_on_commit_callbacks
):
    _round, snapshot = seed_snapshot(tmp_path, lead, django_capture_on_commit_callbacks)
    folder = request_dataset_folder(snapshot_id=snapshot.pk, with_originals=True, send=False)
    folder = build_dataset_folder(folder_id=folder.pk)
    root = Path(default_storage.path(folder.prefix))
    rows = [
        json.loads(line) for line in (root / "train" / "metadata.jsonl").read_text().splitlines()
    ]
    original = root / "train" / rows[0]["original_file_name"]
    clip = Clip.objects.get(pk=rows[0]["clip_id"])
    assert original.read_bytes() == default_storage.open(clip.original.name).read()

    # A worker killed mid-build: one video half copied, the row still "running", heartbeat stale.
    partial = root / "train" / rows[1]["file_name"]
    partial.write_bytes(partial.read_bytes()[:100])
    untouched = root / "train" / rows[0]["file_name"]
    before = untouched.stat().st_mtime_ns
    DatasetFolder.objects.filter(pk=folder.pk).update(
        status=DatasetFolder.Status.RUNNING, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    # Beat's sweeper finds it silent and sends it back to the queue (eager here): it resumes.
    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_stuck_dataset_folders() == [folder.pk]
    folder.refresh_from_db()
    assert folder.status == DatasetFolder.Status.READY
    assert untouched.stat().st_mtime_ns == before  # a whole copy is kept, not copied again
    assert (
        partial.read_bytes()
        == default_storage.open(Clip.objects.get(pk=rows[1]["clip_id"]).video.name).read()
    )
    extracted = extract_archive(folder, tmp_path / "extracted")
    check_loads_with_the_snapshot_split(extracted, snapshot)


@pytest.mark.django_db(transaction=True)
def test_the_exports_page_offers_the_folder_with_its_size_and_streams_the_tar(
    tmp_path, lead, django_capture_on_commit_callbacks
):
    _round, snapshot = seed_snapshot(tmp_path, lead, django_capture_on_commit_callbacks)
    client = Client()
    client.force_login(lead)
    with django_capture_on_commit_callbacks(execute=True):  # the task runs eagerly after commit
        response = client.post(
            reverse("annotation:lead_dataset_folder", args=[snapshot.pk]), {"originals": ""}
        )
    assert response.status_code == 302
    folder = DatasetFolder.objects.get(snapshot=snapshot)
    assert folder.status == DatasetFolder.Status.READY
    page = client.get(reverse("annotation:lead_exports")).content.decode()
    download = reverse("annotation:lead_dataset_archive", args=[folder.pk])
    assert download in page and f"{folder.archive_bytes} bytes" in page
    response = client.get(download)
    assert response.status_code == 200 and int(response["Content-Length"]) == folder.archive_bytes
    body = b"".join(response.streaming_content)
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert len(tar.getnames()) == folder.files
    annotator = make_user("not-a-lead", "annotator")
    client.force_login(annotator)
    assert client.get(download).status_code in (302, 403)


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


@pytest.mark.django_db(transaction=True)
def test_a_build_that_runs_out_of_disk_fails_and_removes_what_it_wrote(
    tmp_path, lead, django_capture_on_commit_callbacks, settings
):
    media = tmp_path / "small-disk"
    if not _tmpfs(media, "4m"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        settings.MEDIA_ROOT = media
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(media)},
            },
        }
        _round, snapshot = seed_snapshot(tmp_path, lead, django_capture_on_commit_callbacks)
        # Fill the disk but for a few kilobytes: the first videos fit, the rest do not.
        stat = os.statvfs(media)
        filler = media / "filler"
        filler.write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 12 * 1024))
        before = sorted(p.relative_to(media) for p in media.rglob("*"))

        folder = request_dataset_folder(snapshot_id=snapshot.pk, send=False)
        out = io.StringIO()
        with pytest.raises(Exception, match="nothing of it kept.*No space left"):
            call_command("export_dataset", snapshot=snapshot.pk, stdout=out)
        folder.refresh_from_db()
        assert folder.status == DatasetFolder.Status.FAILED and "No space left" in folder.error
        assert sorted(p.relative_to(media) for p in media.rglob("*")) == before  # nothing left

        filler.unlink()  # room again: asking again builds it whole
        folder = build_dataset_folder(folder_id=folder.pk)
        assert folder.status == DatasetFolder.Status.READY and folder.files > 0
    finally:
        subprocess.run(["umount", "-l", str(media)], check=False)


@pytest.mark.django_db(transaction=True)
def test_the_folder_is_built_in_the_bucket_on_s3(
    tmp_path, lead, django_capture_on_commit_callbacks, s3_storage
):
    _round, snapshot = seed_snapshot(tmp_path, lead, django_capture_on_commit_callbacks)
    folder = build_dataset_folder(
        folder_id=request_dataset_folder(snapshot_id=snapshot.pk, send=False).pk
    )
    assert folder.status == DatasetFolder.Status.READY, folder.error
    keys = s3_storage.keys(folder.prefix + "/")
    assert len(keys) == folder.files and f"{folder.prefix}/README.md" in keys
    extracted = extract_archive(folder, tmp_path / "from-s3")
    check_loads_with_the_snapshot_split(extracted, snapshot)
