"""AnimeReward on the Django side: train on an export snapshot through the API and the command,
score a round into ClipScore rows (a corrupt clip is recorded, not fatal), the evaluation page."""

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.urls import reverse

from annotation.models import Clip
from annotation.services.exports import create_snapshot
from labelhub.dimensions import DIMENSION_KEYS
from labelhub.storage import local_tree
from runs.models import Run
from runs.tasks import execute_run
from scoring.anime_reward.synthetic import make_labelled_clips
from scoring.models import ClipScore, RewardModel
from tests.conftest import make_user
from tests.lead_data import make_labelled_round

pytestmark = [pytest.mark.django_db(transaction=False), pytest.mark.usefixtures("two_threads")]


@pytest.fixture
def labelled_round(tmp_path):
    """A round of 24 small real clips with rule-following labels, and a ready export snapshot."""
    round_ = make_labelled_round("reward-r1", make_labelled_clips(tmp_path / "clips", 24, seed=5))
    snapshot = create_snapshot(round_ids=[round_.pk], test_fraction=0.25, seed=0)
    assert snapshot.row_counts["clips"] == 24
    return round_, snapshot


@pytest.mark.slow
def test_admin_trains_a_reward_model_then_scores_the_round(
    client, labelled_round, django_capture_on_commit_callbacks
):
    round_, snapshot = labelled_round
    admin, lead, annotator = (
        make_user("adam", "admin"),
        make_user("lena", "lead"),
        make_user("anna", "annotator"),
    )

    client.force_login(lead)
    response = client.post(
        reverse("scoring:api_train"), {"snapshot_id": snapshot.pk}, content_type="application/json"
    )
    assert response.status_code == 403  # launching is for admins

    client.force_login(admin)
    response = client.post(
        reverse("scoring:api_train"),
        {"snapshot_id": snapshot.pk, "config": {"epochs": 0}},
        content_type="application/json",
    )
    assert response.status_code == 400 and "epochs" in response.json()["detail"]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("scoring:api_train"),
            {"snapshot_id": snapshot.pk, "name": "toy-reward", "config": {"epochs": 5}},
            content_type="application/json",
        )
    assert response.status_code == 202
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.kind == Run.Kind.REWARD_TRAINING and run.status == Run.Status.SUCCEEDED
    assert run.step == run.total_steps > 0
    assert any("visual_appeal/loss" in point for point in run.metrics)
    reward_model = RewardModel.objects.get(name="toy-reward")
    assert run.artifacts["reward_model_id"] == reward_model.pk
    assert set(reward_model.metrics) == {*DIMENSION_KEYS, "overall"}
    test_clips = reward_model.config["test_clips"]
    assert (
        test_clips == snapshot.row_counts["test"]
        and reward_model.config["train_clips"] == 24 - test_clips
    )
    assert len(reward_model.evaluation["clips"]) == test_clips
    for key in DIMENSION_KEYS:
        assert (local_tree(reward_model.checkpoint_dir) / key / "head.safetensors").exists()

    # A redelivered task does no harm: the run is no longer queued.
    execute_run.delay(run.pk).get()
    assert RewardModel.objects.count() == 1

    # The evaluation page: metrics and one scatter plot per dimension plus overall, leads only.
    client.force_login(lead)
    page = client.get(reverse("scoring:reward_model", args=[reward_model.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("<svg") == 7 and html.count("<circle") == 7 * test_clips
    assert "Spearman" in html and "toy-reward" in html
    assert client.get(reverse("scoring:reward_models")).status_code == 200
    client.force_login(annotator)
    assert client.get(reverse("scoring:reward_model", args=[reward_model.pk])).status_code == 403

    # Scoring the round: one clip's file is corrupt; it gets an error row, the rest are scored.
    broken = Clip.objects.filter(round=round_).order_by("pk").first()
    with default_storage.open(broken.video.name, "wb") as fh:
        fh.write(b"not a video at all")
    client.force_login(admin)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("scoring:api_score", args=[reward_model.pk]),
            {"round_id": round_.pk},
            content_type="application/json",
        )
    assert response.status_code == 202
    scoring_run = Run.objects.get(pk=response.json()["run_id"])
    assert scoring_run.status == Run.Status.SUCCEEDED
    assert scoring_run.artifacts == {"scored": 23, "failed": 1, "already_scored": 0, "chunks": 1}
    (chunk,) = scoring_run.children.all()  # one chunk of 24 clips; the clip's error is in its log
    assert f"clip {broken.pk} not scored" in chunk.log_tail
    scores = ClipScore.objects.filter(reward_model=reward_model)
    assert scores.count() == 24
    failed = scores.get(clip=broken)
    assert failed.error and failed.overall is None
    for score in scores.exclude(clip=broken):
        rewards = score.rewards()
        assert score.error == "" and all(0.0 <= v <= 1.0 for v in rewards.values())
        assert score.overall == pytest.approx(sum(rewards.values()) / 6, abs=1e-6)

    # Idempotent: scoring again only retries the failed clip.
    first_ids = dict(scores.values_list("clip_id", "pk"))
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            reverse("scoring:api_score", args=[reward_model.pk]),
            {"round_id": round_.pk},
            content_type="application/json",
        )
    again = Run.objects.filter(kind=Run.Kind.SCORING).order_by("-pk").first()
    assert again.artifacts == {"scored": 0, "failed": 1, "already_scored": 23, "chunks": 1}
    assert (
        dict(ClipScore.objects.filter(reward_model=reward_model).values_list("clip_id", "pk"))
        == first_ids
    )

    listing = client.get(
        reverse("scoring:api_scores", args=[reward_model.pk]), {"round": round_.pk}
    )
    assert len(listing.json()["results"]) == 24


@pytest.mark.slow
def test_commands_train_and_score_with_progress(labelled_round, capsys):
    round_, snapshot = labelled_round
    call_command(
        "train_reward",
        snapshot=snapshot.pk,
        epochs=2,
        name="from-command",
        dimensions="visual_appeal,visual_motion",
    )
    out = capsys.readouterr()
    reward_model = RewardModel.objects.get(name="from-command")
    assert "from-command" in out.out and "visual_appeal" in out.out
    assert "reward run" in out.err  # the tqdm bar
    assert reward_model.run.status == Run.Status.SUCCEEDED

    clip_ids = list(Clip.objects.filter(round=round_).values_list("pk", flat=True)[:3])
    call_command(
        "score_clips",
        reward_model=reward_model.pk,
        clips=",".join(map(str, clip_ids)),
        batch_size=2,
    )
    assert "scored 3, failed 0" in capsys.readouterr().out
    assert ClipScore.objects.filter(reward_model=reward_model, error="").count() == 3


def test_gpus_reach_the_run_from_the_api_the_form_and_the_command(
    client, labelled_round, django_capture_on_commit_callbacks
):
    """``gpus`` N sends a reward run to ``gpu-xN``; bad values and configurations that are not
    exact on several processes are refused with what is wrong (nothing trains here)."""
    from runs.services import queue_for
    from scoring.services import gpus_refusal

    _, snapshot = labelled_round
    client.force_login(make_user("adam", "admin"))
    url = reverse("scoring:api_train")
    response = client.post(
        url, {"snapshot_id": snapshot.pk, "gpus": 0}, content_type="application/json"
    )
    assert response.status_code == 400 and "gpus" in response.json()
    response = client.post(
        url,
        {"snapshot_id": snapshot.pk, "gpus": 2, "config": {"finetune_encoders": True}},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "not supported on 2 processes" in response.json()["detail"]
    with django_capture_on_commit_callbacks(execute=False) as sent:
        response = client.post(
            url, {"snapshot_id": snapshot.pk, "gpus": 2}, content_type="application/json"
        )
    assert response.status_code == 202 and len(sent) == 1
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.params["gpus"] == 2 and queue_for(run.params) == "gpu-x2"

    with django_capture_on_commit_callbacks(execute=False):
        client.post(
            reverse("scoring:launch_training"),
            {"snapshot_id": snapshot.pk, "name": "from-form", "gpus": "3"},
        )
    assert Run.objects.get(output_name="reward_model:from-form").params["gpus"] == 3
    response = client.post(
        reverse("scoring:launch_training"), {"snapshot_id": snapshot.pk, "gpus": "1.5"}, follow=True
    )
    assert "gpus must be a whole number" in response.content.decode()

    with django_capture_on_commit_callbacks(execute=False):
        call_command("train_reward", snapshot=snapshot.pk, gpus=4, enqueue=True, name="cli")
    assert Run.objects.get(output_name="reward_model:cli").params["gpus"] == 4

    # What run_round asks before it gives its GPUs to the round's reward training: the full
    # preset fine-tunes encoders by default, so its reward model trains on one GPU.
    assert gpus_refusal(config={"preset": "tiny"}, gpus=2) == ""
    assert "fine-tuning encoders" in gpus_refusal(config={"preset": "full"}, gpus=2)
    assert gpus_refusal(config={"preset": "full", "finetune_encoders": False}, gpus=2) == ""
