"""Fan-out under faults, with real processes (issue 24): a generation run's chunks spread over two
gpu workers, one of them SIGKILLed mid-chunk; the disk filling up while a chunk writes videos; a
parent that lasts longer than the soft time limit of one job.

Short recovery settings as in ``test_run_crash`` (heartbeat 1 s, stale after 4 s); production
defaults are 30 s / 600 s. No clock is faked and nothing of ours is mocked.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import uuid
from collections import Counter
from contextlib import ExitStack

import pytest

from annotation.models import Clip, ImportRow
from annotation.services.ingest import referenced_names
from labelhub.storage import list_objects, run_dir
from runs import tasks as _tasks  # noqa: F401  (registers runs.execute with the app)
from runs.models import Run
from tests.workers import celery_worker, wait_for
from training.models import Candidate
from training.services import launch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RECOVERY_ENV = {
    "LABELHUB_RUN_HEARTBEAT_SECONDS": "1",
    "LABELHUB_RUN_STALE_SECONDS": "4",
    "LABELHUB_BROKER_VISIBILITY_TIMEOUT": "8",
    "OMP_NUM_THREADS": "1",
}
ENDED = (Run.Status.SUCCEEDED, Run.Status.FAILED, Run.Status.CANCELLED)
LIMIT = 300


def _run(pk: int) -> Run:
    return Run.objects.get(pk=pk)


def _worker(stack: ExitStack, media_root, log_path, *, name: str, queues: str = "", **options):
    """A real worker named ``name`` on ``queues`` (default: its name, ``gpu1`` and ``gpu2`` on
    ``gpu``) with the short recovery settings, kept running until ``stack`` closes; only the
    ``default`` worker, started first, empties the broker."""
    extra_env = {**RECOVERY_ENV, **options.pop("extra_env", {})}
    options.setdefault("flush_broker", name == "default")
    queues = queues or ("gpu" if name.startswith("gpu") else name)
    return stack.enter_context(
        celery_worker(
            queues=queues,
            media_root=media_root,
            log_path=log_path,
            extra_env=extra_env,
            name=name,
            **options,
        )
    )


def _generate(seed_round, admin_user, prefix: str, *, k: int, base_seed: int, **params) -> Run:
    """Launch a generation run of K candidates per condition of ``seed_round`` into a new round."""
    return launch.launch_run(
        kind="generation",
        created_by=admin_user,
        params={
            "source_round_id": seed_round.pk,
            "target_round": f"{prefix}-{uuid.uuid4().hex[:6]}",
            "candidates_per_condition": k,
            "base_seed": base_seed,
            **params,
        },
    )


def _assert_exactly_once(run: Run, seed_round, k: int, base_seed: int) -> None:
    """The target round holds K candidates per condition, none twice, every file referenced."""
    clips = Clip.objects.filter(round_id=run.artifacts["round_id"])
    conditions = set(seed_round.clips.values_list("condition_id", flat=True))
    assert Counter(clips.values_list("condition_id", flat=True)) == dict.fromkeys(conditions, k)
    pairs = list(clips.values_list("condition_id", "seed"))
    assert len(set(pairs)) == len(pairs) == k * len(conditions)  # none twice
    assert {seed for _, seed in pairs} == {base_seed + i for i in range(k)}
    assert Candidate.objects.filter(clip__in=clips, run=run).count() == len(pairs)
    assert not ImportRow.objects.exclude(status=ImportRow.Status.OK).filter(
        payload__round_id=run.artifacts["round_id"]
    )
    # No orphaned file: no hand-over video left, every ingested file belongs to a clip or a
    # condition, and no chunk left a local video behind.
    assert not list_objects(("generated",))
    referenced = referenced_names()
    stored = [o.name for o in list_objects(("originals", "clips", "posters"))]
    assert stored and set(stored) <= referenced
    for chunk in run.children.all():
        assert not (run_dir(chunk.pk) / "videos").exists()


def test_sigkill_of_one_of_two_gpu_workers_costs_one_chunk(
    seed_round, admin_user, isolated_media, tmp_path
):
    k, base_seed = 3, 5
    logs = {name: tmp_path / f"{name}.log" for name in ("default", "gpu1", "gpu2")}
    with ExitStack() as stack:
        processes = {
            name: _worker(stack, isolated_media, log, name=name) for name, log in logs.items()
        }
        run = _generate(
            seed_round,
            admin_user,
            "fanout",
            k=k,
            base_seed=base_seed,
            inference_steps=12,
            chunk_conditions=1,
        )

        # Wait until the worker that does not hold the parent is mid-chunk: one candidate of
        # its chunk made and handed over, the next one in flight.
        def victim_mid_chunk():
            parent = _run(run.pk)
            for chunk in parent.children.filter(status=Run.Status.RUNNING, step__gte=1):
                if chunk.worker and chunk.worker != parent.worker and chunk.step < k:
                    return chunk
            return None

        wait_for(victim_mid_chunk, timeout=LIMIT, log_path=logs["gpu1"], interval=0.05)
        lost = victim_mid_chunk()
        assert lost is not None
        victim = lost.worker.split("@")[0]
        os.kill(processes[victim].pid, signal.SIGKILL)  # that GPU host dies mid-chunk
        processes[victim].wait(timeout=30)

        wait_for(
            lambda: _run(run.pk).status in ENDED,
            timeout=LIMIT,
            log_path=logs["gpu1" if victim == "gpu2" else "gpu2"],
        )
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    lost.refresh_from_db()
    # The lost chunk was failed for its silent heartbeat and retried by the surviving worker.
    assert lost.status == Run.Status.SUCCEEDED and lost.attempts == 2
    assert "no heartbeat" in lost.log_tail and lost.worker.split("@")[0] != victim
    others = run.children.exclude(pk=lost.pk)
    assert {c.attempts for c in others} == {1}  # the other chunks ran once
    # Every candidate imported once, those the killed attempt handed over included.
    assert run.artifacts["imported"] == k * 4
    _assert_exactly_once(run, seed_round, k, base_seed)


def test_a_candidate_whose_import_fails_after_its_chunk_ended_is_made_again(
    seed_round, admin_user, isolated_media, tmp_path
):
    """Chunks end once their videos are handed over; the parent waits for the imports. A hand-
    over video spoilt before ingest reads it (its import fails) sends its chunk round again as a
    fresh chunk row, which makes only that candidate: the round ends with exactly K each."""
    k, base_seed = 2, 11
    logs = {name: tmp_path / f"{name}.log" for name in ("default", "gpu")}
    with ExitStack() as stack:
        _worker(stack, isolated_media, logs["gpu"], name="gpu", flush_broker=True)  # first
        run = _generate(
            seed_round,
            admin_user,
            "spoilt",
            k=k,
            base_seed=base_seed,
            inference_steps=2,
            chunk_conditions=2,
        )
        # No ingest worker yet: every chunk ends with its videos handed over, none imported.
        wait_for(
            lambda: _run(run.pk).children.filter(status=Run.Status.SUCCEEDED).count() == 2,
            timeout=LIMIT,
            log_path=logs["gpu"],
        )
        assert _run(run.pk).status == Run.Status.RUNNING  # the parent waits for the imports
        handed_over = sorted(o.name for o in list_objects(("generated",)))
        assert len(handed_over) == 4 * k
        (isolated_media / handed_over[0]).write_bytes(b"not a video")
        _worker(stack, isolated_media, logs["default"], name="default", flush_broker=False)
        wait_for(lambda: _run(run.pk).status in ENDED, timeout=LIMIT, log_path=logs["gpu"])
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    chunks = list(run.children.order_by("pk"))
    assert len(chunks) == 3  # the two chunks, and the spoilt one's chunk again
    assert chunks[2].params["chunk"] in {c.params["chunk"] for c in chunks[:2]}
    assert chunks[2].artifacts["videos"] == 1 and chunks[2].artifacts["already_in_round"] == 3
    assert run.artifacts["videos"] == 4 * k + 1
    assert (
        ImportRow.objects.filter(
            payload__round_id=run.artifacts["round_id"], status=ImportRow.Status.ERROR
        ).count()
        == 1
    )
    clips = Clip.objects.filter(round_id=run.artifacts["round_id"])
    assert Counter(clips.values_list("condition_id", flat=True)) == dict.fromkeys(
        set(seed_round.clips.values_list("condition_id", flat=True)), k
    )
    assert Candidate.objects.filter(clip__in=clips, run=run).count() == 4 * k
    assert not list_objects(("generated",))


def test_a_parent_run_outlives_the_soft_time_limit_of_one_job(
    seed_round, admin_user, isolated_media, tmp_path
):
    """A generation parent waits for all its chunks, so it lasts longer than one job may: its
    task carries LABELHUB_PARENT_TASK_SOFT_TIME_LIMIT, not the per-job limit (3 s here, on a
    prefork gpu worker as in production, where Celery enforces it). Under the per-job limit the
    chunk the parent was running in its task when the limit struck would fail and be retried."""
    # The workers' per-job limit is 3 s: the gpu worker sends the chunks, so they carry it; the
    # parent's message carries its own (tests/test_time_limits.py reads both off Redis).
    env = {"LABELHUB_TASK_SOFT_TIME_LIMIT": "3"}
    logs = {name: tmp_path / f"{name}.log" for name in ("default", "gpu")}
    with ExitStack() as stack:
        _worker(stack, isolated_media, logs["default"], name="default", extra_env=env)
        _worker(stack, isolated_media, logs["gpu"], name="gpu", extra_env=env, pool="prefork")
        run = _generate(
            seed_round,
            admin_user,
            "long",
            k=2,
            base_seed=3,
            inference_steps=8,
            chunk_conditions=1,
        )
        wait_for(lambda: _run(run.pk).status in ENDED, timeout=LIMIT, log_path=logs["gpu"])
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert (run.finished_at - run.started_at).total_seconds() > 3  # past the per-job limit
    # The limit never fired: no chunk the parent ran in its own task was cut short and retried.
    assert {c.attempts for c in run.children.all()} == {1}
    assert "SoftTimeLimitExceeded" not in run.log_tail
    _assert_exactly_once(run, seed_round, 2, 3)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (needs CAP_SYS_ADMIN: root in CI's container); skipped where mount is refused."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_while_a_chunk_writes_fails_it_and_the_run_resumes(
    seed_round, admin_user, isolated_media, tmp_path, small_disk
):
    k, base_seed = 2, 7
    artifacts = small_disk / "artifacts"
    artifacts.mkdir()
    filler = small_disk / "filler"
    # Fill the disk the gpu worker writes its videos on, leaving less than one video's room.
    with open(filler, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    env = {"LABELHUB_ARTIFACTS_ROOT": str(artifacts)}
    logs = {name: tmp_path / f"{name}.log" for name in ("default", "gpu")}
    with ExitStack() as stack:
        for name, log in logs.items():
            _worker(stack, isolated_media, log, name=name, extra_env=env)
        run = _generate(
            seed_round,
            admin_user,
            "full",
            k=k,
            base_seed=base_seed,
            inference_steps=2,
            chunk_conditions=2,
            chunk_attempts=1,
        )
        wait_for(lambda: _run(run.pk).status in ENDED, timeout=LIMIT, log_path=logs["gpu"])
        run.refresh_from_db()
        assert run.status == Run.Status.FAILED
        assert "2 of 2 chunks failed" in run.error and "disk full" in run.error
        for chunk in run.children.all():
            assert chunk.status == Run.Status.FAILED
            assert "disk full: no space left on the device while writing" in chunk.error
        # Nothing half-written was handed over or imported.
        assert not Clip.objects.filter(round_id=run.artifacts["round_id"]).exists()
        assert not ImportRow.objects.filter(payload__round_id=run.artifacts["round_id"]).exists()
        assert not list_objects(("generated",))

        filler.unlink()  # space is back
        launch.resume(run_id=run.pk, created_by=admin_user)
        wait_for(lambda: _run(run.pk).status in ENDED, timeout=LIMIT, log_path=logs["gpu"])
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert {c.attempts for c in run.children.all()} == {2}
    _assert_exactly_once(run, seed_round, k, base_seed)
