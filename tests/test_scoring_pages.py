"""Admins launch reward training and scoring from the reward-model page; others cannot."""

from html.parser import HTMLParser

import pytest
from django.conf import settings

from annotation.models import ExportSnapshot
from runs.models import Run
from scoring.anime_reward.config import get_preset
from scoring.models import RewardModel
from tests.conftest import client_for
from tests.factories import make_round

pytestmark = pytest.mark.django_db


class _Inputs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.inputs: dict[str, dict[str, str]] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and "name" in attrs:
            self.inputs[attrs.pop("name")] = attrs


def form_inputs(html: str) -> dict[str, dict[str, str]]:
    """Each named <input> of a page and its other attributes."""
    parser = _Inputs()
    parser.feed(html)
    return parser.inputs


def test_admin_launches_training_and_scoring_from_the_page(admin_user, lead):
    snapshot = ExportSnapshot.objects.create(
        params={},
        status=ExportSnapshot.Status.READY,
        content_hash="h" * 64,
        row_counts={"clips": 10, "train": 8, "test": 2},
    )
    round_ = make_round()
    page = client_for(admin_user).get("/reward-models/").content.decode()
    assert "Train a reward model" in page and f"#{snapshot.pk}" in page
    assert "Train a reward model" not in client_for(lead).get("/reward-models/").content.decode()
    assert (
        client_for(lead).post("/reward-models/launch/", {"snapshot_id": snapshot.pk}).status_code
        == 403
    )

    page = client_for(admin_user).get("/reward-models/").content.decode()
    # the deployment preset's defaults are the placeholders of the form's number fields
    preset = get_preset(settings.LABELHUB_REWARD_PRESET)
    inputs = form_inputs(page)
    assert inputs["keyframes"] == {
        "type": "number",
        "min": "1",
        "placeholder": str(preset.keyframes),
    }
    assert inputs["track_frames"] == {
        "type": "number",
        "min": "0",
        "placeholder": str(preset.track_frames),
    }
    response = client_for(admin_user).post(
        "/reward-models/launch/", {"snapshot_id": snapshot.pk, "epochs": "3", "name": "v1"}
    )
    run = Run.objects.get(kind=Run.Kind.REWARD_TRAINING)
    assert response["Location"] == f"/runs/{run.pk}/"
    # the deployment's preset (LABELHUB_REWARD_PRESET) is recorded with the run
    assert run.params["config"] == {"epochs": 3, "preset": "tiny"}
    assert run.status == Run.Status.QUEUED

    tuned = client_for(admin_user).post(
        "/reward-models/launch/",
        {
            "snapshot_id": snapshot.pk,
            "finetune_encoders": "all",
            "encoder_learning_rate": "3e-4",
            "keyframes": "6",
            "track_frames": "12",
            "name": "v2",
        },
    )
    assert tuned.status_code == 302
    assert Run.objects.get(params__name="v2").params["config"] == {
        "finetune_encoders": True,
        "encoder_learning_rate": 3e-4,
        "keyframes": 6,
        "track_frames": 12,
        "preset": "tiny",
    }

    for fields, message in (
        ({"epochs": "0"}, "epochs must be at least 1"),
        ({"epochs": "many"}, "epochs must be a number, not &#x27;many&#x27;"),
        ({"encoder_learning_rate": "fast"}, "encoder learning rate must be a number"),
        ({"encoder_learning_rate": "-1"}, "encoder_learning_rate must be positive"),
        ({"finetune_encoders": "some"}, "fine-tune encoders must be one of"),
        ({"track_frames": "1"}, "track_frames must be 0 (every sampled frame) or at least 2"),
        ({"keyframes": "x"}, "keyframes must be a number"),
    ):
        bad = client_for(admin_user).post(
            "/reward-models/launch/", {"snapshot_id": snapshot.pk, **fields}, follow=True
        )
        assert bad.status_code == 200, fields
        assert "Not launched" in bad.content.decode() and message in bad.content.decode(), fields
    assert Run.objects.count() == 2

    model = RewardModel.objects.create(name="rm", preset="tiny", checkpoint_dir="-")
    client_for(admin_user).post(
        "/reward-models/score/", {"reward_model_id": model.pk, "round_id": round_.pk}
    )
    scoring = Run.objects.get(kind=Run.Kind.SCORING)
    assert scoring.params["round_id"] == round_.pk and scoring.params["reward_model_id"] == model.pk
