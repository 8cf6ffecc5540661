"""Fan-out through the one run lifecycle (issue 24), in process (eager tasks, real Postgres, ffmpeg
and the tiny generator): a failed chunk fails only itself and is retried a bounded number of
times, resumes alone, the parent resumes making only what is missing; cancelling a parent
cancels its chunks."""

from __future__ import annotations

import pytest

from annotation.models import Clip, Condition
from runs import services as runs
from runs.models import Run
from training.services import launch

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
Status = Run.Status


def test_a_failing_chunk_fails_alone_after_bounded_retries_and_resumes_alone(
    seed_round, admin_user, django_capture_on_commit_callbacks
):
    conditions = list(Condition.objects.order_by("pk"))
    broken = conditions[0]
    image = broken.image.name
    Condition.objects.filter(pk=broken.pk).update(image="conditions/gone.png")  # unreadable
    with django_capture_on_commit_callbacks(execute=True):
        run = launch.launch_run(
            kind="generation",
            created_by=admin_user,
            params={
                "source_round_id": seed_round.pk,
                "target_round": "retry",
                "candidates_per_condition": 1,
                "inference_steps": 2,
                "chunk_conditions": 1,
                "chunk_attempts": 2,
            },
        )
    run.refresh_from_db()
    chunks = {c.params["condition_ids"][0]: c for c in run.children.all()}
    assert run.status == Status.FAILED and len(chunks) == 4
    assert "1 of 4 chunks failed" in run.error and f"chunk run {chunks[broken.pk].pk}" in run.error
    failed = chunks.pop(broken.pk)
    assert failed.status == Status.FAILED and failed.attempts == 2  # bounded: 2 claims, no more
    assert "gone.png" in failed.error
    assert {(c.status, c.attempts) for c in chunks.values()} == {(Status.SUCCEEDED, 1)}
    target = Clip.objects.filter(round__name="retry")
    assert sorted(target.values_list("condition_id", flat=True)) == sorted(chunks)
    assert run.step == 3 and run.total_steps == 4  # one bar over all chunks

    # The cause fixed, the failed chunk resumes alone (the parent stays failed) ...
    Condition.objects.filter(pk=broken.pk).update(image=image)
    with django_capture_on_commit_callbacks(execute=True):
        launch.resume(run_id=failed.pk, created_by=admin_user)
    failed.refresh_from_db()
    assert failed.status == Status.SUCCEEDED and failed.attempts == 3
    assert target.count() == 4
    # ... and the parent, resumed, makes nothing more and runs no chunk again.
    with django_capture_on_commit_callbacks(execute=True):
        launch.resume(run_id=run.pk, created_by=admin_user)
    run.refresh_from_db()
    assert run.status == Status.SUCCEEDED, run.error
    assert run.artifacts["videos"] == run.artifacts["imported"] == 4  # each chunk made its one
    assert {c.attempts for c in chunks.values()} == {1}
    assert target.count() == 4 and run.step == run.total_steps == 4


def test_cancelling_a_parent_cancels_its_queued_and_running_chunks(db, admin_user):
    parent = runs.create_run(kind="generation", params={}, created_by=admin_user)
    Run.objects.filter(pk=parent.pk).update(status=Status.RUNNING)
    queued = runs.create_run(kind="generation_chunk", params={}, parent=parent)
    running = runs.create_run(kind="generation_chunk", params={}, parent=parent)
    done = runs.create_run(kind="generation_chunk", params={}, parent=parent)
    Run.objects.filter(pk=running.pk).update(status=Status.RUNNING)
    Run.objects.filter(pk=done.pk).update(status=Status.SUCCEEDED)

    runs.request_cancel(parent.pk)
    states = {
        r.pk: (r.status, r.cancel_requested)
        for r in Run.objects.filter(pk__in=[parent.pk, queued.pk, running.pk, done.pk])
    }
    assert states[parent.pk] == (Status.RUNNING, True)  # stops at its next progress report
    assert states[queued.pk] == (Status.CANCELLED, True)  # never starts
    assert states[running.pk] == (Status.RUNNING, True)  # stops at its next progress report
    assert states[done.pk] == (Status.SUCCEEDED, False)  # a finished chunk is left alone
    reporter = runs.RunReporter(running.pk)
    with pytest.raises(runs.RunCancelled):
        reporter(1, 2, None, "a step")
