"""The whole loop, as a user runs it: real Celery workers (a ``default`` queue process and two
``gpu`` queue processes, as two GPUs, on the production settings module), the configured import
root (never widened), local disk or S3. Scoring and generation fan out in chunks over both gpu
workers.

demo clips -> ratings -> export -> reward training -> scoring -> pairs -> GAPO (2 steps, tiny) ->
generation -> round N+1 holds exactly K x conditions new clips with posters and condition images,
and an annotator who leases one gets its media through the authorised media path.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from contextlib import ExitStack
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.storage import default_storage
from django.test import Client
from PIL import Image

from annotation.demo import CONDITIONS, character_sheet, render_frames, write_mp4
from annotation.management.commands.seed_demo import demo_scores
from annotation.models import Clip, ExportSnapshot, ImportRow, Round
from annotation.services.assignment import lease_next_clip
from annotation.services.exports import request_snapshot_build
from annotation.services.ingest import import_manifest_file
from annotation.services.ratings import submit_rating
from labelhub.storage import list_objects
from runs.models import Run
from scoring.models import ClipScore, RewardModel
from scoring.services import request_reward_training, request_scoring
from tests.conftest import make_user
from tests.workers import celery_worker
from training.models import Candidate, PolicyCheckpoint, PreferencePair
from training.services.launch import launch_run

pytest_plugins = ["tests.s3"]  # the s3_server and s3_storage fixtures
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DEMO_CONDITIONS = CONDITIONS[:2]
DEMO_SOURCES = ("ground_truth", "hailuo", "cogvideox")  # 2 conditions x 3 sources = 6 clips
K = 2  # candidates per condition
RATERS = ("loop-rater-1", "loop-rater-2")
STEP_TIMEOUT = 300.0


def render_demo_subset(out_dir: Path, round_name: str) -> Path:
    """The demo clips of ``DEMO_CONDITIONS`` (as ``make_demo_clips`` draws them) and a manifest."""
    rows = []
    for condition in DEMO_CONDITIONS:
        sheet = out_dir / "characters" / f"{condition.character.name.lower()}.png"
        sheet.parent.mkdir(parents=True, exist_ok=True)
        if not sheet.exists():
            character_sheet(condition.character).save(sheet)
        first_frame = out_dir / "conditions" / f"{condition.slug}.png"
        first_frame.parent.mkdir(parents=True, exist_ok=True)
        for generator in DEMO_SOURCES:
            frames = render_frames(condition, generator)
            video = out_dir / "clips" / f"{condition.slug}--{generator}.mp4"
            video.parent.mkdir(parents=True, exist_ok=True)
            write_mp4(frames, video)
            if generator == "ground_truth":
                Image.fromarray(frames[0]).save(first_frame)
            rows.append(
                {
                    "video": str(video.relative_to(out_dir)),
                    "prompt": condition.prompt,
                    "first_frame": str(first_frame.relative_to(out_dir)),
                    "character_reference": str(sheet.relative_to(out_dir)),
                    "source": generator,
                    "round": round_name,
                }
            )
    manifest = out_dir / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return manifest


class Workers:
    """Both worker processes, watched together: a step waits while both are alive."""

    def __init__(self, logs: list[Path]):
        self.logs = logs
        self.processes = []

    def tail(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-4000:]}" for log in self.logs)

    def wait_for(self, what: str, predicate, timeout: float = STEP_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            for process in self.processes:
                assert process.poll() is None, f"a worker died during {what}\n{self.tail()}"
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}\n{self.tail()}")

    def finish(self, run: Run) -> Run:
        """Wait for a run to end on the gpu worker; it must have succeeded."""
        ended = {
            Run.Status.SUCCEEDED,
            Run.Status.FAILED,
            Run.Status.CANCELLED,
        }
        self.wait_for(f"{run.kind} run {run.pk}", lambda: _reload(run).status in ended)
        run.refresh_from_db()
        assert run.status == Run.Status.SUCCEEDED, f"{run.error}\n{self.tail()}"
        return run


def _reload(row):
    row.refresh_from_db()
    return row


def stored_bytes(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def fetch_media(client: Client, url: str, *, remote: bool) -> tuple[bytes, str]:
    """GET a media URL as the browser does: on S3 follow the presigned redirect to the bucket."""
    response = client.get(url)
    if not remote:
        assert response.status_code == 200, (url, response.status_code)
        return b"".join(response.streaming_content), response["Content-Type"]
    assert response.status_code == 302, (url, response.status_code)
    location = response["Location"]
    assert location.startswith(default_storage.endpoint_url) and "Signature" in location
    with urllib.request.urlopen(location, timeout=30) as presigned:  # noqa: S310 - local S3 server
        return presigned.read(), presigned.headers["Content-Type"]


@pytest.fixture(params=["local", "s3"])
def storage_backend(request, isolated_media):
    """``None`` for local disk, else the S3 bucket the test process and both workers share."""
    if request.param == "local":
        return None
    return request.getfixturevalue("s3_storage")


def test_the_loop_closes_through_real_workers(storage_backend, isolated_media, tmp_path):
    remote = storage_backend is not None
    worker_env = storage_backend.worker_env() if remote else {}
    admin = make_user("loop-admin", "admin")
    lead = make_user("loop-lead", "lead")
    annotator = make_user("loop-annotator", "annotator")

    # The lead's files sit inside the configured import root, exactly where production wants them.
    import_root = Path(settings.LABELHUB_IMPORT_ROOTS[0])
    source_dir = import_root / f"loop-{uuid.uuid4().hex[:8]}"
    round1 = Round.objects.create(name=f"loop-round-1-{source_dir.name}")
    manifest = render_demo_subset(source_dir, round1.name)
    conditions = len(DEMO_CONDITIONS)
    clips_in_round1 = conditions * len(DEMO_SOURCES)

    logs = [tmp_path / f"worker-{name}.log" for name in ("default", "gpu1", "gpu2")]
    workers = Workers(logs)
    started = time.monotonic()
    timings: dict[str, float] = {}

    def lap(step: str) -> None:
        timings[step] = round(time.monotonic() - started - sum(timings.values()), 1)

    with ExitStack() as stack:
        for queue, log in zip(("default", "gpu", "gpu"), logs, strict=True):
            workers.processes.append(
                stack.enter_context(
                    celery_worker(
                        queues=queue,
                        media_root=isolated_media,
                        log_path=log,
                        extra_env=worker_env,
                        name=log.stem,
                        flush_broker=queue == "default",  # the first one starts from empty
                    )
                )
            )

        # 1. demo clips, imported through the manifest path and the default-queue worker
        batch = import_manifest_file(path=manifest, created_by=lead)
        workers.wait_for(
            "ingest",
            lambda: all(
                row.status in (ImportRow.Status.OK, ImportRow.Status.ERROR)
                for row in ImportRow.objects.filter(batch=batch)
            ),
        )
        errors = list(
            ImportRow.objects.filter(batch=batch)
            .exclude(status=ImportRow.Status.OK)
            .values_list("message", flat=True)
        )
        assert not errors, errors
        assert round1.clips.filter(status=Clip.Status.READY).count() == clips_in_round1
        lap("ingest")

        # 2. ratings: two raters through the assignment and rating services the API uses
        for rater_name in RATERS:
            rater = make_user(rater_name, "annotator")
            while lease := lease_next_clip(round_id=round1.pk, annotator=rater):
                submit_rating(
                    clip_id=lease.clip_id,
                    annotator=rater,
                    scores=demo_scores(lease.clip, rater_name),
                    seconds_spent=5.0,
                    idempotency_key=uuid.uuid4(),
                )
        assert all(c.rating_count == len(RATERS) for c in round1.clips.all())

        # 3. export snapshot (built by the default worker), grouped split: one condition held out
        snapshot = request_snapshot_build(
            round_ids=[round1.pk], test_fraction=0.5, seed=0, created_by=lead
        )
        workers.wait_for(
            "export",
            lambda: (
                _reload(snapshot).status
                in (ExportSnapshot.Status.READY, ExportSnapshot.Status.FAILED)
            ),
        )
        assert snapshot.status == ExportSnapshot.Status.READY, snapshot.error
        assert snapshot.row_counts
        lap("ratings+export")

        # 4. reward training on the snapshot (gpu worker), tiny random encoders
        reward_run = workers.finish(
            request_reward_training(
                snapshot_id=snapshot.pk,
                config={"preset": "tiny", "epochs": 2, "decode_workers": 1},
                created_by=admin,
            )
        )
        reward_model = RewardModel.objects.get(pk=reward_run.artifacts["reward_model_id"])
        assert reward_model.config["train_clips"] + reward_model.config["test_clips"] == (
            clips_in_round1
        )
        lap("reward training")

        # 5. scoring round 1 with that model
        scoring_run = workers.finish(
            request_scoring(
                reward_model_id=reward_model.pk,
                round_id=round1.pk,
                chunk_clips=clips_in_round1 // 2,
                created_by=admin,
            )
        )
        assert scoring_run.artifacts["scored"] == clips_in_round1, scoring_run.artifacts
        assert scoring_run.children.filter(status=Run.Status.SUCCEEDED).count() == 2
        scores = ClipScore.objects.filter(reward_model=reward_model, clip__round=round1)
        assert scores.count() == clips_in_round1 and not scores.exclude(error="").exists()
        lap("scoring")

        # 6. preference pairs: best vs worst clip of each condition by the reward model
        pair_params = {
            "round_id": round1.pk,
            "origin": "reward_model",
            "reward_model_id": reward_model.pk,
        }
        workers.finish(launch_run(kind="pairs", params=pair_params, created_by=admin))
        assert PreferencePair.objects.filter(round=round1).count() == conditions
        lap("pairs")

        # 7. GAPO: two tiny steps, a policy checkpoint (LoRA)
        gapo_run = workers.finish(
            launch_run(
                kind="gapo",
                params={
                    **pair_params,
                    "max_steps": 2,
                    "batch_pairs": 1,
                    "lora_rank": 4,
                    "checkpoint_every": 2,
                    "checkpoint_name": f"loop-policy-{source_dir.name}",
                },
                created_by=admin,
            )
        )
        checkpoint = PolicyCheckpoint.objects.get(pk=gapo_run.artifacts["policy_checkpoint_id"])
        assert gapo_run.artifacts["steps"] == 2
        lap("gapo")

        # 8. generation with the new policy; its candidates are imported into the next round
        next_round = f"loop-round-2-{source_dir.name}"
        generation_run = workers.finish(
            launch_run(
                kind="generation",
                params={
                    "source_round_id": round1.pk,
                    "target_round": next_round,
                    "checkpoint_id": checkpoint.pk,
                    "candidates_per_condition": K,
                    "inference_steps": 2,
                    "base_seed": 11,
                    "chunk_conditions": 1,
                },
                created_by=admin,
            )
        )
        lap("generation+import")

    # Round N+1 holds exactly K x conditions new clips, each with its files in storage.
    round2 = Round.objects.get(name=next_round)
    assert generation_run.artifacts["imported"] == K * conditions
    assert generation_run.artifacts["import_errors"] == 0
    clips = list(round2.clips.select_related("condition").order_by("pk"))
    assert len(clips) == K * conditions
    assert {c.status for c in clips} == {Clip.Status.READY}
    assert {c.source_kind for c in clips} == {Clip.SourceKind.POLICY}
    assert sorted(c.seed for c in clips) == sorted([11, 12] * conditions)
    assert {c.condition_id for c in clips} == set(
        round1.clips.values_list("condition_id", flat=True)
    )
    assert Candidate.objects.filter(clip__round=round2, checkpoint=checkpoint).count() == len(clips)
    # one chunk per condition, and each gpu worker made one (the parent's worker helps; the
    # other takes the first chunk from the queue)
    chunks = list(generation_run.children.order_by("pk"))
    assert [c.status for c in chunks] == [Run.Status.SUCCEEDED] * conditions
    assert {c.worker.split("@")[0] for c in chunks} == {"worker-gpu1", "worker-gpu2"}
    assert not list_objects(("generated",))  # every hand-over video was taken over by ingest
    for clip in clips:
        for name in (clip.video.name, clip.poster.name, clip.condition.image.name):
            assert name and default_storage.exists(name), (clip.pk, name)
    if remote:  # everything went to the bucket, nothing to the local media root
        keys = storage_backend.keys()
        for clip in clips:
            assert {clip.video.name, clip.poster.name, clip.condition.image.name} <= set(keys)
        assert any(k.startswith(f"exports/{snapshot.pk}/") for k in keys)
        assert not [p for p in isolated_media.rglob("*") if p.is_file()]

    # An annotator leases a new clip and gets its video, poster and condition image.
    client = Client()
    client.force_login(annotator)
    assert client.get(f"/media/clip/{clips[0].pk}/video").status_code == 403  # not leased yet
    response = client.post(
        f"/api/rounds/{round2.pk}/next/", data={}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    leased = response.json()["clip"]
    clip = next(c for c in clips if c.pk == leased["id"])
    for url_key, name, content_type in (
        ("video_url", clip.video.name, "video/mp4"),
        ("poster_url", clip.poster.name, "image/jpeg"),
        ("condition_image_url", clip.condition.image.name, "image/png"),
    ):
        body, served_type = fetch_media(client, leased[url_key], remote=remote)
        assert body == stored_bytes(name) and len(body) > 100, url_key
        assert served_type == content_type, (url_key, served_type)
    assert body.startswith(b"\x89PNG")  # the condition image

    print(f"\nloop on {'s3' if remote else 'local disk'}: {timings}")
