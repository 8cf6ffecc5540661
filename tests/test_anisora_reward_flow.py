"""The anisora preset end to end: with LABELHUB_REWARD_PRESET=anisora and a replica of the
release's folder, an admin evaluates the released models on a snapshot, trains their heads on
it, compares both on the same held-out split, and scores a round; a folder missing a released
file is refused at launch with the file's name."""

from __future__ import annotations

import shutil

import pytest
from django.urls import reverse

from annotation.models import Clip, ClipLabel, Condition
from annotation.services.exports import create_snapshot
from labelhub.dimensions import DIMENSION_KEYS
from runs.models import Run
from scoring.anime_reward.anisora import layout
from scoring.anime_reward.synthetic import make_labelled_clips
from scoring.models import ClipScore, RewardModel
from tests import anisora_replica as replica
from tests.conftest import make_user, store_file
from tests.lead_data import make_round, sha

pytestmark = [pytest.mark.django_db(transaction=False), pytest.mark.usefixtures("two_threads")]


@pytest.fixture
def release_settings(settings, tmp_path_factory):
    root = replica.write_release(tmp_path_factory.mktemp("anisora") / "reward")
    sam = tmp_path_factory.mktemp("sam") / "sam2.1-hiera-base-plus"
    replica.sam2(sam)
    settings.LABELHUB_REWARD_PRESET = "anisora"
    settings.LABELHUB_ANISORA_REWARD_DIR = str(root)
    settings.LABELHUB_REWARD_SOURCES = {"sam": str(sam)}
    return root


@pytest.fixture
def labelled_round(tmp_path):
    round_ = make_round("anisora-r1")
    for synthetic in make_labelled_clips(tmp_path / "clips", 8, seed=3):
        key = f"{synthetic.index}"
        condition = Condition.objects.create(
            content_hash=sha("cond" + key),
            image=store_file(synthetic.condition_image_path, f"conditions/a{key}.png"),
            image_sha256=sha("image" + key),
            prompt=f"{synthetic.prompt} (take {key})",
            prompt_sha256=sha("p" + key),
        )
        video = store_file(synthetic.video_path, f"clips/a{key}.mp4")
        clip = Clip.objects.create(
            round=round_,
            condition=condition,
            source_kind="external",
            source_name="toy",
            original=video,
            original_sha256=sha("orig" + key),
            video=video,
            status=Clip.Status.READY,
            target_ratings=3,
            rating_count=3,
        )
        ClipLabel.objects.create(
            clip=clip,
            count=3,
            overall=sum(synthetic.labels.values()) / 6,
            **{f"{k}_mean": v for k, v in synthetic.labels.items()},
            **{f"{k}_std": 0.0 for k in DIMENSION_KEYS},
        )
    snapshot = create_snapshot(round_ids=[round_.pk], test_fraction=0.25, seed=0)
    return round_, snapshot


def _train(client, snapshot, name, config, capture):
    with capture(execute=True):
        response = client.post(
            reverse("scoring:api_train"),
            {"snapshot_id": snapshot.pk, "name": name, "config": config},
            content_type="application/json",
        )
    assert response.status_code == 202, response.content
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.status == Run.Status.SUCCEEDED, run.log_tail
    return RewardModel.objects.get(name=name)


@pytest.mark.slow
def test_released_models_evaluate_fine_tune_and_score_a_round(
    client, release_settings, labelled_round, django_capture_on_commit_callbacks
):
    round_, snapshot = labelled_round
    admin = make_user("adam", "admin")
    client.force_login(admin)

    released = _train(
        client,
        snapshot,
        "released",
        {"release_finetune": "none"},
        django_capture_on_commit_callbacks,
    )
    tuned = _train(client, snapshot, "tuned", {"epochs": 30}, django_capture_on_commit_callbacks)
    for model in (released, tuned):
        assert model.preset == "anisora"
        assert model.config["release_dir"] == str(release_settings)
        assert set(model.metrics) == {*DIMENSION_KEYS, "overall"}
        assert len(model.evaluation["clips"]) == model.config["test_clips"] > 0
    # the heads trained on the snapshot: the training loss fell; motion and character have none
    for key in layout.HEAD_DIMENSIONS:
        curve = tuned.evaluation["losses"][key]
        assert len(curve) == 30 and curve[-1] < curve[0], key
    assert "visual_motion" not in tuned.evaluation["losses"]
    released_motion = [c["predicted"]["visual_motion"] for c in released.evaluation["clips"]]
    tuned_motion = [c["predicted"]["visual_motion"] for c in tuned.evaluation["clips"]]
    assert released_motion == pytest.approx(tuned_motion)  # ActionCLIP is the release's in both

    # the model page: preset, the released files each dimension read, both models on one split
    page = client.get(reverse("scoring:reward_model", args=[tuned.pk])).content.decode()
    assert "Preset <strong>anisora</strong>" in page
    assert "with its heads trained on this snapshot" in page
    assert f"{release_settings}/{layout.MOTION_CKPT}" in page
    assert f"{release_settings}/{layout.TEXT_CONSISTENCY_CKPT}" in page
    assert "sam2.1-hiera-base-plus" in page  # character tracking's SAM 2.1 folder
    assert 'id="same-split"' in page and ">released</a>" in page and ">tuned</a>" in page

    # scoring the round with the fine-tuned model: every clip, rewards in [0, 1]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("scoring:api_score", args=[tuned.pk]),
            {"round_id": round_.pk},
            content_type="application/json",
        )
    assert response.status_code == 202
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.status == Run.Status.SUCCEEDED, run.log_tail
    assert {k: run.artifacts[k] for k in ("scored", "failed", "already_scored")} == {
        "scored": 8,
        "failed": 0,
        "already_scored": 0,
    }
    for score in ClipScore.objects.filter(reward_model=tuned):
        rewards = score.rewards()
        assert score.error == "" and all(0.0 <= v <= 1.0 for v in rewards.values())
        assert score.overall == pytest.approx(sum(rewards.values()) / 6, abs=1e-6)
    # the stored model's heads are the trained ones: its held-out predictions come back
    clip_id = tuned.evaluation["clips"][0]["clip_id"]
    stored = ClipScore.objects.get(reward_model=tuned, clip_id=clip_id)
    predicted = tuned.evaluation["clips"][0]["predicted"]
    for key in DIMENSION_KEYS:
        assert getattr(stored, key) == pytest.approx(predicted[key], abs=1e-4), key


def test_a_release_folder_missing_a_file_is_refused_at_launch(
    client, release_settings, labelled_round
):
    _, snapshot = labelled_round
    (release_settings / layout.CHARACTER_CKPT).unlink()
    client.force_login(make_user("adam", "admin"))
    response = client.post(
        reverse("scoring:api_train"),
        {"snapshot_id": snapshot.pk, "name": "x"},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert layout.CHARACTER_CKPT in response.json()["detail"]
    assert not Run.objects.exists()
    shutil.rmtree(release_settings / "weights" / "bert-base-uncased")
    response = client.post(
        reverse("scoring:api_train"),
        {"snapshot_id": snapshot.pk, "name": "x"},
        content_type="application/json",
    )
    assert "weights/bert-base-uncased/vocab.txt" in response.json()["detail"]


def test_the_runs_form_and_the_command_start_from_the_release(
    client, release_settings, labelled_round, django_capture_on_commit_callbacks
):
    from django.core.management import call_command

    _, snapshot = labelled_round
    client.force_login(make_user("adam", "admin"))
    page = client.get(reverse("scoring:reward_models")).content.decode()
    assert 'name="release_finetune"' in page  # offered because the preset is anisora
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            reverse("scoring:launch_training"),
            {"snapshot_id": snapshot.pk, "name": "as-released", "release_finetune": "none"},
        )
    assert response.status_code == 302
    run = Run.objects.get()
    assert run.params["config"]["preset"] == "anisora"
    assert run.params["config"]["release_finetune"] == "none"
    assert run.params["config"]["release_dir"] == str(release_settings)
    with django_capture_on_commit_callbacks(execute=False):
        call_command(
            "train_reward", snapshot=snapshot.pk, name="cli", release_finetune="heads", enqueue=True
        )
    assert Run.objects.order_by("-pk").first().params["config"]["release_finetune"] == "heads"


def test_lora_is_offered_by_the_form_the_command_and_the_api(
    client, release_settings, labelled_round, django_capture_on_commit_callbacks
):
    from django.core.management import call_command

    _, snapshot = labelled_round
    client.force_login(make_user("adam", "admin"))
    page = client.get(reverse("scoring:reward_models")).content.decode()
    assert '<option value="lora">' in page and 'name="release_lora_rank"' in page
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post(
            reverse("scoring:launch_training"),
            {
                "snapshot_id": snapshot.pk,
                "name": "form-lora",
                "release_finetune": "lora",
                "release_lora_rank": "16",
            },
        )
    assert response.status_code == 302
    config = Run.objects.get().params["config"]
    assert (config["release_finetune"], config["release_lora_rank"]) == ("lora", 16)
    with django_capture_on_commit_callbacks(execute=False):
        call_command(
            "train_reward",
            snapshot=snapshot.pk,
            name="cli-lora",
            release_finetune="lora",
            release_lora_rank=4,
            enqueue=True,
        )
    assert Run.objects.order_by("-pk").first().params["config"]["release_lora_rank"] == 4
    response = client.post(
        reverse("scoring:api_train"),
        {
            "snapshot_id": snapshot.pk,
            "name": "api-lora",
            "config": {"release_finetune": "lora", "release_lora_rank": 0},
        },
        content_type="application/json",
    )
    assert response.status_code == 400 and "release_lora_rank" in response.json()["detail"]
    assert Run.objects.count() == 2
