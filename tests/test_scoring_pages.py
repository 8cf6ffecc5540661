"""Admins launch reward training and scoring from the reward-model page; others cannot."""

import pytest
from django.test import Client

from annotation.models import ExportSnapshot
from runs.models import TrainingRun
from scoring.models import RewardModel
from tests.factories import make_round

pytestmark = pytest.mark.django_db


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_admin_launches_training_and_scoring_from_the_page(admin_user, lead):
    snapshot = ExportSnapshot.objects.create(
        params={},
        status=ExportSnapshot.Status.READY,
        content_hash="h" * 64,
        row_counts={"clips": 10, "train": 8, "test": 2},
    )
    round_ = make_round()
    page = logged_in(admin_user).get("/reward-models/").content.decode()
    assert "Train a reward model" in page and f"#{snapshot.pk}" in page
    assert "Train a reward model" not in logged_in(lead).get("/reward-models/").content.decode()
    assert (
        logged_in(lead).post("/reward-models/launch/", {"snapshot_id": snapshot.pk}).status_code
        == 403
    )

    response = logged_in(admin_user).post(
        "/reward-models/launch/", {"snapshot_id": snapshot.pk, "epochs": "3", "name": "v1"}
    )
    run = TrainingRun.objects.get(kind=TrainingRun.Kind.REWARD_TRAINING)
    assert response["Location"] == f"/runs/{run.pk}/"
    assert run.params["config"] == {"epochs": 3} and run.status == TrainingRun.Status.QUEUED

    bad = logged_in(admin_user).post(
        "/reward-models/launch/", {"snapshot_id": snapshot.pk, "epochs": "0"}, follow=True
    )
    assert "Not launched" in bad.content.decode() and TrainingRun.objects.count() == 1

    model = RewardModel.objects.create(name="rm", preset="tiny", checkpoint_dir="-")
    logged_in(admin_user).post(
        "/reward-models/score/", {"reward_model_id": model.pk, "round_id": round_.pk}
    )
    scoring = TrainingRun.objects.get(kind=TrainingRun.Kind.SCORING)
    assert scoring.params["round_id"] == round_.pk and scoring.params["reward_model_id"] == model.pk
