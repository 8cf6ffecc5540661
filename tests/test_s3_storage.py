"""Media on S3 (django-storages) against a real S3 API server on 127.0.0.1 (moto's server).

Ingest writes every file to the bucket and nothing to the local media root; job code reads stored
files through ``labelhub.storage.local_path`` (a verified local copy); the annotator's media are
presigned redirects to the bucket, given only to a user who may see the clip; exports are stored
in and served from the bucket; reward training and scoring run on the stored files. GAPO and
generation on S3 run in tests/test_loop_end_to_end.py through real workers.
"""

from __future__ import annotations

import shutil
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from PIL import Image

from annotation.models import Clip, ImportRow, Round
from annotation.selectors.exports import iter_snapshot_rows
from annotation.services.assignment import lease_next_clip
from annotation.services.exports import create_snapshot
from annotation.services.ingest import import_rows
from annotation.services.ratings import submit_rating
from labelhub.dimensions import DIMENSION_KEYS
from labelhub.storage import list_objects, local_path
from runs.models import Run
from scoring.models import ClipScore, RewardModel
from scoring.services import request_reward_training, request_scoring
from tests.conftest import make_user
from tests.toy import mean_brightness
from training.services import launch

pytest_plugins = ["tests.s3"]  # the s3_server and s3_storage fixtures

CONDITIONS = 2
CLIPS_PER_CONDITION = 2


def write_png(path: Path, colour: tuple[int, int, int]) -> str:
    Image.new("RGB", (48, 32), colour).save(path)
    return str(path)


@pytest.fixture
def s3_round(s3_storage, tmp_path, video_factory, lead, django_capture_on_commit_callbacks):
    """Two conditions (first frame + character sheet) x two clips, ingested onto the bucket."""
    assert Path(tmp_path).resolve().is_relative_to(settings.LABELHUB_IMPORT_ROOTS[0])
    round_ = Round.objects.create(name="s3-round")
    character = write_png(tmp_path / "character.png", (250, 250, 250))
    rows = []
    for c in range(CONDITIONS):
        first_frame = write_png(tmp_path / f"first-{c}.png", (40 * c, 90, 200))
        for k in range(CLIPS_PER_CONDITION):
            source = "testsrc2" if k == 0 else "smptebars"
            rows.append(
                {
                    "video": str(video_factory(seconds=1.0 + 0.25 * c, source=source)),
                    "prompt": f"a character waves, take {c}",
                    "first_frame": first_frame,
                    "character_reference": character,
                    "source": "ground_truth" if k == 0 else "hailuo",
                    "round": round_.name,
                }
            )
    with django_capture_on_commit_callbacks(execute=True):
        batch = import_rows(rows=rows, created_by=lead, manifest_name="s3.jsonl")
    messages = list(
        batch.rows.exclude(status=ImportRow.Status.OK).values_list("message", flat=True)
    )
    assert not messages, messages
    return round_


def rate_every_clip(round_: Round, raters: int = 2) -> None:
    for r in range(raters):
        rater = make_user(f"s3-rater-{r}", "annotator")
        while lease := lease_next_clip(round_id=round_.pk, annotator=rater):
            submit_rating(
                clip_id=lease.clip_id,
                annotator=rater,
                scores={
                    key: 1 + (lease.clip_id + r + i) % 5 for i, key in enumerate(DIMENSION_KEYS)
                },
                seconds_spent=3.0,
                idempotency_key=uuid.uuid4(),
            )


def test_ingest_stores_every_file_in_the_bucket_and_nothing_on_local_disk(
    s3_round, s3_storage, isolated_media
):
    with pytest.raises(NotImplementedError):
        default_storage.path("anything")  # the backend really is remote
    clips = list(s3_round.clips.select_related("condition"))
    assert len(clips) == CONDITIONS * CLIPS_PER_CONDITION
    assert {c.status for c in clips} == {Clip.Status.READY}
    keys = set(s3_storage.keys())
    for clip in clips:
        names = {
            clip.original.name,
            clip.video.name,
            clip.poster.name,
            clip.condition.image.name,
            clip.condition.character_reference.name,
        }
        assert all(names) and names <= keys, names - keys
    assert {k.split("/", 1)[0] for k in keys} == {
        "originals",
        "clips",
        "posters",
        "conditions",
        "characters",
    }
    assert s3_storage.read(clips[0].condition.image.name).startswith(b"\x89PNG")
    assert s3_storage.read(clips[0].poster.name).startswith(b"\xff\xd8\xff")
    assert not [p for p in isolated_media.rglob("*") if p.is_file()]


def test_local_path_is_a_verified_local_copy_of_a_stored_object(s3_round, s3_storage):
    clip = s3_round.clips.first()
    path = Path(local_path(clip.video.name))
    cache = Path(settings.LABELHUB_ARTIFACTS_ROOT) / "storage-cache"
    assert path.is_relative_to(cache)
    assert path.read_bytes() == s3_storage.read(clip.video.name)
    path.write_bytes(path.read_bytes()[:100])  # a copy cut short (a crash, a full disk)
    assert Path(local_path(clip.video.name)).read_bytes() == s3_storage.read(clip.video.name)
    assert not list(path.parent.glob(".part-*"))  # no half-written download left behind
    assert local_path("") == ""


def _query(url: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))


def _seconds_left(query: dict[str, str]) -> float:
    """A presigned URL's remaining lifetime: SigV4 names it, SigV2 gives the epoch it ends."""
    if "X-Amz-Expires" in query:
        return float(query["X-Amz-Expires"])
    return int(query["Expires"]) - time.time()


def test_annotator_media_are_short_lived_presigned_redirects(s3_round, s3_storage, annotator):
    client = Client()
    client.force_login(annotator)
    response = client.post(
        f"/api/rounds/{s3_round.pk}/next/", data={}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    leased = response.json()["clip"]
    clip = Clip.objects.select_related("condition").get(pk=leased["id"])
    expected = {
        "video_url": (clip.video.name, "video/mp4"),
        "poster_url": (clip.poster.name, "image/jpeg"),
        "condition_image_url": (clip.condition.image.name, "image/png"),
        "character_reference_url": (clip.condition.character_reference.name, "image/png"),
    }
    lifetime = default_storage.querystring_expire
    for url_key, (name, content_type) in expected.items():
        response = client.get(leased[url_key])
        assert response.status_code == 302, (url_key, response.status_code)
        location = response["Location"]
        assert location.startswith(f"{s3_storage.endpoint_url}/{s3_storage.name}/{name}?")
        query = _query(location)
        assert query["response-content-type"] == content_type
        assert 0 < _seconds_left(query) <= lifetime + 5  # short-lived
        with urllib.request.urlopen(location, timeout=30) as presigned:  # noqa: S310
            assert presigned.read() == s3_storage.read(name)
            assert presigned.headers["Content-Type"] == content_type
    # The browser seeks the video with Range requests against the presigned URL.
    location = client.get(leased["video_url"])["Location"]
    ranged = urllib.request.Request(location, headers={"Range": "bytes=0-99"})
    with urllib.request.urlopen(ranged, timeout=30) as partial:  # noqa: S310
        assert partial.status == 206
        assert partial.read() == s3_storage.read(clip.video.name)[:100]
    # The original upload is an opaque download, never rendered by the browser.
    location = client.get(reverse("annotation:clip_media", args=[clip.pk, "original"]))["Location"]
    assert _query(location)["response-content-type"] == "application/octet-stream"
    assert _query(location)["response-content-disposition"].startswith("attachment")


def test_media_of_a_clip_not_leased_is_refused_without_a_url(s3_round, annotator):
    client = Client()
    client.force_login(annotator)
    clip = s3_round.clips.first()
    response = client.get(reverse("annotation:clip_media", args=[clip.pk, "video"]))
    assert response.status_code == 403 and "Location" not in response
    anonymous = Client().get(reverse("annotation:clip_media", args=[clip.pk, "video"]))
    assert anonymous.status_code == 302  # to the login page, not to the bucket
    assert "/login" in anonymous["Location"] and "Signature" not in anonymous["Location"]


def test_exports_are_stored_in_and_served_from_the_bucket(s3_round, s3_storage, lead):
    rate_every_clip(s3_round)
    snapshot = create_snapshot(round_ids=[s3_round.pk], test_fraction=0.5, created_by=lead)
    assert snapshot.status == snapshot.Status.READY, snapshot.error
    names = {entry["name"] for entry in snapshot.files.values()}
    assert names and names <= set(s3_storage.keys(f"exports/{snapshot.pk}/"))
    rows = list(iter_snapshot_rows(snapshot))
    assert len(rows) == CONDITIONS * CLIPS_PER_CONDITION
    assert {row["split"] for row in rows} == {"train", "test"}
    assert {row["video"] for row in rows} <= set(s3_storage.keys("clips/"))

    client = Client()
    client.force_login(lead)
    response = client.get(reverse("annotation:lead_export_file", args=[snapshot.pk, "labels_csv"]))
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    assert body == s3_storage.read(snapshot.files["labels_csv"]["name"])
    assert body.count(b"\n") == 1 + CONDITIONS * CLIPS_PER_CONDITION


@pytest.mark.slow
def test_reward_training_and_scoring_read_their_clips_from_the_bucket(
    s3_round, s3_storage, lead, admin_user, django_capture_on_commit_callbacks
):
    rate_every_clip(s3_round)
    snapshot = create_snapshot(round_ids=[s3_round.pk], test_fraction=0.5, created_by=lead)
    with django_capture_on_commit_callbacks(execute=True):
        training = request_reward_training(
            snapshot_id=snapshot.pk,
            config={"preset": "tiny", "epochs": 1, "decode_workers": 1},
            created_by=admin_user,
        )
    training.refresh_from_db()
    assert training.status == Run.Status.SUCCEEDED, training.error
    reward_model = RewardModel.objects.get(pk=training.artifacts["reward_model_id"])
    assert reward_model.config["train_clips"] + reward_model.config["test_clips"] == 4
    assert reward_model.config["skipped"] in (0, [], {})

    with django_capture_on_commit_callbacks(execute=True):
        scoring = request_scoring(
            reward_model_id=reward_model.pk, round_id=s3_round.pk, created_by=admin_user
        )
    scoring.refresh_from_db()
    assert scoring.status == Run.Status.SUCCEEDED, scoring.error
    assert scoring.artifacts["scored"] == 4 and scoring.artifacts["failed"] == 0
    scores = ClipScore.objects.filter(reward_model=reward_model)
    assert scores.count() == 4 and not scores.exclude(error="").exists()
    assert all(score.overall is not None for score in scores)


def stored_under(prefix: str) -> set[str]:
    return {obj.name for obj in list_objects((prefix,))}


@pytest.mark.slow
def test_a_gapo_run_resumes_on_another_host_from_its_checkpoint_in_the_bucket(
    s3_storage, seed_round, admin_user, django_capture_on_commit_callbacks
):
    """Resumable checkpoints go to the bucket (retention too): a GAPO run whose host is gone
    (its local output directory deleted) resumes from the stored checkpoint, not from step 0."""

    def run(kind: str, **params) -> Run:
        with django_capture_on_commit_callbacks(execute=True):
            launched = launch.launch_run(kind=kind, params=params, created_by=admin_user)
        launched.refresh_from_db()
        assert launched.status == Run.Status.SUCCEEDED, launched.error
        return launched

    run(
        "generation",
        source_round_id=seed_round.pk,
        target_round="s3-candidates",
        candidates_per_condition=2,
        base_seed=5,
        inference_steps=2,
    )
    candidates = Round.objects.get(name="s3-candidates")
    brightness = RewardModel.objects.create(name="brightness", preset="exact", checkpoint_dir="-")
    for clip in Clip.objects.filter(round=candidates):
        ClipScore.objects.create(
            clip=clip,
            reward_model=brightness,
            overall=mean_brightness(local_path(clip.original.name)),
        )
    source = {"round_id": candidates.pk, "origin": "reward_model", "reward_model_id": brightness.pk}
    run("pairs", **source)
    gapo = run(
        "gapo",
        **source,
        max_steps=4,
        batch_pairs=2,
        lora_rank=4,
        checkpoint_every=2,
        keep_last_checkpoints=1,
        keep_best_checkpoint=False,
    )
    prefix = f"checkpoints/run-{gapo.pk}"
    assert gapo.checkpoint_path == f"{prefix}/checkpoint-4"
    stored = stored_under(prefix)
    assert stored and all(name.startswith(f"{prefix}/checkpoint-4/") for name in stored)

    # The GPU host is gone: its output directory with the local checkpoints with it.
    Run.objects.filter(pk=gapo.pk).update(status=Run.Status.FAILED)
    shutil.rmtree(gapo.artifacts["output_dir"])
    with django_capture_on_commit_callbacks(execute=True):
        resumed = launch.resume(run_id=gapo.pk, created_by=admin_user, max_steps=6)
    resumed.refresh_from_db()
    assert resumed.status == Run.Status.SUCCEEDED, resumed.error
    assert "at step 4" in resumed.log_tail
    assert resumed.metrics[0]["step"] == 5  # continued, not restarted
    assert resumed.checkpoint_path == f"{prefix}/checkpoint-6"  # one folder per lineage
    assert all(name.startswith(f"{prefix}/checkpoint-6/") for name in stored_under(prefix))
