"""Export snapshots survive a dead builder: recovered by the sweeper, nothing leaked, no lie."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.db import DatabaseError, transaction
from django.utils import timezone

from annotation.models import ExportSnapshot
from annotation.services.exports import (
    build_snapshot,
    create_snapshot,
    request_snapshot,
    sweep_stuck_snapshots,
)
from labelhub.storage import artifacts_dir
from tests.conftest import make_user
from tests.lead_data import make_clip, make_condition, make_round, rate

Status = ExportSnapshot.Status


@pytest.fixture
def one_labelled_round(db):
    round_ = make_round("exported")
    rater = make_user("rater", "annotator")
    for i in range(4):
        rate(make_clip(round_, make_condition(f"img{i}", f"prompt {i}"), "ground_truth"), rater, 3)
    return round_


def _as_if_builder_died(snapshot: ExportSnapshot, *, seconds_ago: int) -> None:
    ExportSnapshot.objects.filter(pk=snapshot.pk).update(
        status=Status.RUNNING, heartbeat_at=timezone.now() - timedelta(seconds=seconds_ago)
    )


def test_abandoned_build_is_swept_back_and_rebuilt_without_leftovers(
    one_labelled_round, django_capture_on_commit_callbacks
):
    snapshot = request_snapshot(round_ids=[one_labelled_round.pk])
    stale = settings.LABELHUB_EXPORT_STALE_SECONDS + 5
    _as_if_builder_died(snapshot, seconds_ago=stale)
    # What the killed attempt left: a scratch file and a half-stored file.
    leftover = artifacts_dir("export-scratch", str(snapshot.pk)) / "labels.csv"
    leftover.write_text("partial")
    default_storage.save(f"exports/{snapshot.pk}/labels.csv", open(leftover, "rb"))

    with django_capture_on_commit_callbacks(execute=True):
        assert sweep_stuck_snapshots() == [snapshot.pk]
    snapshot.refresh_from_db()
    assert snapshot.status == Status.READY and snapshot.row_counts["clips"] == 4
    assert not leftover.parent.exists()
    with default_storage.open(snapshot.files["labels_csv"]["name"]) as fh:
        body = fh.read().decode()
    assert body.count("\n") == 5 and "partial" not in body  # header + 4 rows, replaced
    assert snapshot.files["labels_csv"]["name"] == f"exports/{snapshot.pk}/labels.csv"


def test_a_delivery_for_a_live_build_does_nothing(one_labelled_round):
    snapshot = request_snapshot(round_ids=[one_labelled_round.pk])
    _as_if_builder_died(snapshot, seconds_ago=1)  # heartbeat fresh: another worker builds it
    assert build_snapshot(snapshot_id=snapshot.pk).status == Status.RUNNING
    assert sweep_stuck_snapshots() == []
    snapshot.refresh_from_db()
    assert snapshot.status == Status.RUNNING and snapshot.files == {}


def test_ready_snapshot_is_immutable_but_its_creator_can_be_deleted(one_labelled_round):
    lead = make_user("lead", "lead")
    snapshot = create_snapshot(round_ids=[one_labelled_round.pk], created_by=lead)
    assert snapshot.status == Status.READY
    assert build_snapshot(snapshot_id=snapshot.pk).content_hash == snapshot.content_hash
    User.objects.filter(pk=lead.pk).delete()
    snapshot.refresh_from_db()
    assert snapshot.created_by is None and snapshot.status == Status.READY
    with pytest.raises(DatabaseError, match="immutable"), transaction.atomic():
        ExportSnapshot.objects.filter(pk=snapshot.pk).update(row_counts={})
