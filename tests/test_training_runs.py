"""The alignment loop through the Django side: generation runs ingest candidates into a round,
exact rewards become ClipScores, a pairs run stores best-vs-worst pairs, a GAPO run writes a
PolicyCheckpoint, and the policy's round beats the base round. Plus who may launch and cancel."""

import numpy as np
import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import Clip, Round
from runs.models import Run
from scoring.models import ClipScore, RewardModel
from tests.toy import mean_brightness
from training.alignment.pairs import write_pairs_jsonl
from training.alignment.sampling import candidate_seed
from training.models import PolicyCheckpoint, PreferencePair
from training.services import launch
from training.services.pairs import pairs_for_training

K = 3


def run_now(captured, *, kind, params, user):
    with captured(execute=True):
        run = launch.launch_run(kind=kind, params=params, created_by=user)
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    return run


def score_round(round_, reward_model):
    for clip in Clip.objects.filter(round=round_, status=Clip.Status.READY):
        ClipScore.objects.create(
            clip=clip, reward_model=reward_model, overall=mean_brightness(clip.original.path)
        )


def round_reward(round_):
    return np.mean([mean_brightness(c.original.path) for c in Clip.objects.filter(round=round_)])


@pytest.mark.slow
def test_the_loop_end_to_end_through_runs(
    seed_round, admin_user, tmp_path, client, django_capture_on_commit_callbacks
):
    captured = django_capture_on_commit_callbacks
    gen0 = run_now(
        captured,
        kind="generation",
        user=admin_user,
        params={
            "source_round_id": seed_round.pk,
            "target_round": "round 0",
            "candidates_per_condition": K,
            "base_seed": 7,
        },
    )
    round0 = Round.objects.get(name="round 0")
    clips0 = Clip.objects.filter(round=round0)
    assert clips0.filter(status=Clip.Status.READY).count() == 4 * K
    assert set(clips0.values_list("seed", flat=True)) == {7, 8, 9}
    assert set(clips0.values_list("source_name", flat=True)) == {"base"}
    assert set(clips0.values_list("condition_id", flat=True)) == set(
        Clip.objects.filter(round=seed_round).values_list("condition_id", flat=True)
    )  # same conditions
    assert gen0.artifacts["videos"] == 4 * K

    brightness = RewardModel.objects.create(
        name="exact brightness", preset="exact", checkpoint_dir="-"
    )
    score_round(round0, brightness)
    run_now(
        captured,
        kind="pairs",
        user=admin_user,
        params={"round_id": round0.pk, "origin": "reward_model", "reward_model_id": brightness.pk},
    )
    pairs = list(PreferencePair.objects.filter(round=round0))
    assert len(pairs) == 4
    for pair in pairs:
        scores = ClipScore.objects.filter(clip__condition_id=pair.condition_id, clip__round=round0)
        assert pair.winner_reward == max(s.overall for s in scores)
        assert pair.loser_reward == min(s.overall for s in scores)
    assert write_pairs_jsonl(pairs_for_training(round_id=round0.pk), tmp_path / "pairs.jsonl") == 4

    # The Training runs form posts strings, its steps field prefilled with "1000".
    client.force_login(admin_user)
    form = {"round_id": round0.pk, "origin": "reward_model", "reward_model_id": brightness.pk}
    response = client.post(reverse("training:launch"), {"kind": "dpo", **form, "max_steps": "1000"})
    from_form = Run.objects.get(kind="dpo")
    assert response["Location"] == reverse("training:run", args=[from_form.pk])
    assert from_form.params["trainer"]["max_steps"] == 1000
    launch.cancel(run_id=from_form.pk)

    gapo = run_now(
        captured,
        kind="gapo",
        user=admin_user,
        params={
            "round_id": round0.pk,
            "origin": "reward_model",
            "reward_model_id": brightness.pk,
            "max_steps": 40,
            "learning_rate": 1e-3,
            "lora_rank": 8,
            "batch_pairs": 2,
            "checkpoint_every": 20,
            "checkpoint_name": "policy-1",
        },
    )
    assert (gapo.step, gapo.total_steps) == (40, 40)
    assert [m["step"] for m in gapo.metrics] == list(range(1, 41))
    assert gapo.checkpoint_path.endswith("checkpoint-40")
    policy = PolicyCheckpoint.objects.get(name="policy-1")
    assert policy.run == gapo and gapo.artifacts["policy_checkpoint_id"] == policy.pk

    run_now(
        captured,
        kind="generation",
        user=admin_user,
        params={
            "source_round_id": round0.pk,
            "target_round": "round 1",
            "checkpoint_id": policy.pk,
            "candidates_per_condition": K,
            "base_seed": 7,
        },
    )
    round1 = Round.objects.get(name="round 1")
    clips1 = Clip.objects.filter(round=round1)
    assert clips1.count() == 4 * K
    assert set(clips1.values_list("source_kind", "candidate__checkpoint_id")) == {
        ("policy", policy.pk)
    }
    assert sorted(clips1.values_list("candidate__seed", flat=True)) == sorted([7, 8, 9] * 4)
    assert round_reward(round1) > round_reward(round0)


def test_launch_validates_params_with_clear_errors(seed_round, admin_user):
    with pytest.raises(launch.InvalidParams, match="reward_model_id is required"):
        launch.validate_params("pairs", {"round_id": seed_round.pk})
    with pytest.raises(launch.InvalidParams, match="no reward_model pairs yet"):
        launch.validate_params(
            "gapo",
            {
                "round_id": seed_round.pk,
                "origin": "reward_model",
                "reward_model_id": RewardModel.objects.create(name="m", preset="p").pk,
            },
        )
    with pytest.raises(launch.InvalidParams, match="round 999999 does not exist"):
        launch.validate_params("generation", {"source_round_id": 999999, "target_round": "x"})
    with pytest.raises(launch.InvalidParams, match="unknown parameter"):
        launch.validate_params(
            "generation", {"source_round_id": seed_round.pk, "target_round": "x", "lr": 1}
        )
    with pytest.raises(launch.InvalidParams, match="kind must be one of"):
        launch.validate_params("scoring", {})


def test_trainer_fields_from_the_launch_form_are_read_as_their_types():
    """The Training runs form and ``launch_run`` send strings: "20" steps is 20, not an error."""
    value = launch._trainer_value
    assert value("max_steps", "20") == 20 and value("max_steps", 20.0) == 20
    assert value("learning_rate", "1e-4") == 1e-4 and value("beta", 5000) == 5000.0
    assert value("keep_best_checkpoint", "no") is False and value("keep_best_checkpoint", True)
    assert value("gradient_checkpointing", "") is None
    assert value("mixed_precision", "bf16") == "bf16"
    for name, bad, message in (
        ("max_steps", "2.5", "must be a whole number"),
        ("max_steps", "many", "must be a number"),
        ("max_steps", True, "must be a number"),
        ("max_steps", [1], "must be a number"),
        ("learning_rate", "nan", "must be a finite number"),
        ("keep_best_checkpoint", "maybe", "must be true or false"),
        ("mixed_precision", 3, "must be text"),
    ):
        with pytest.raises(launch.InvalidParams, match=f"{name} {message}"):
            value(name, bad)


def test_only_admins_launch_and_cancel_leads_watch(
    seed_round, admin_user, lead, annotator, django_capture_on_commit_callbacks
):
    body = {"kind": "generation", "params": {"source_round_id": seed_round.pk, "target_round": "r"}}
    client = APIClient()
    for user, expected in ((annotator, 403), (lead, 403)):
        client.force_authenticate(user)
        assert (
            client.post(reverse("training:api_runs"), body, format="json").status_code == expected
        )
    assert Run.objects.count() == 0

    client.force_authenticate(admin_user)
    bad = client.post(
        reverse("training:api_runs"),
        {"kind": "generation", "params": {"target_round": "r"}},
        format="json",
    )
    assert bad.status_code == 400 and "source_round_id is required" in bad.json()["detail"]
    with django_capture_on_commit_callbacks(
        execute=False
    ):  # queued, the worker has not picked it up
        created = client.post(reverse("training:api_runs"), body, format="json")
    assert created.status_code == 201 and created.json()["status"] == "queued"
    run_id = created.json()["id"]

    client.force_authenticate(lead)
    watched = client.get(reverse("training:api_run", args=[run_id])).json()
    assert watched["status"] == "queued" and watched["eta_seconds"] is None
    assert client.post(reverse("training:api_run_cancel", args=[run_id])).status_code == 403
    client.force_authenticate(admin_user)
    cancelled = client.post(reverse("training:api_run_cancel", args=[run_id])).json()
    assert cancelled["status"] == "cancelled"


def test_admin_pages_render_and_reject_others(seed_round, admin_user, lead, client):
    client.force_login(lead)
    assert client.get(reverse("training:runs")).status_code == 403
    client.force_login(admin_user)
    page = client.get(reverse("training:runs"))
    assert page.status_code == 200 and b"Launch" in page.content
    response = client.post(
        reverse("training:launch"),
        {"kind": "pairs", "round_id": seed_round.pk, "origin": "reward_model"},
    )
    assert response.status_code == 302 and Run.objects.count() == 0  # invalid: no reward model
    run = Run.objects.create(
        kind="gapo",
        params={"trainer": {"max_steps": 10}},
        metrics=[{"step": 1, "loss": 0.5, "implicit_accuracy": 1.0}],
    )
    watch = client.get(reverse("training:run", args=[run.pk]))
    assert watch.status_code == 200 and b'data-metric="loss"' in watch.content


def test_output_names_are_reserved_at_launch_not_after_training(seed_round, admin_user):
    """Two launches that would save the same checkpoint (or reward model) name: the second is
    refused at once, while the first is still queued; once it failed, the name is free again."""
    clips = list(Clip.objects.filter(round=seed_round).order_by("pk"))
    PreferencePair.objects.create(
        round=seed_round,
        condition=clips[0].condition,
        winner=clips[0],
        loser=clips[1],
        winner_reward=1.0,
        loser_reward=0.0,
        origin="human_labels",
    )
    params = {"round_id": seed_round.pk, "origin": "human_labels", "checkpoint_name": "ckpt-a"}
    first = launch.launch_run(kind="gapo", params=params, created_by=admin_user)  # not committed
    assert first.status == Run.Status.QUEUED and first.output_name == "checkpoint:ckpt-a"
    with pytest.raises(launch.InvalidParams, match="'ckpt-a' is already the output name of GAPO"):
        launch.launch_run(kind="dpo", params=params, created_by=admin_user)
    assert Run.objects.count() == 1
    launch.cancel(run_id=first.pk)  # a queued run is cancelled at once: the name is free
    again = launch.launch_run(kind="dpo", params=params, created_by=admin_user)
    assert again.output_name == "checkpoint:ckpt-a"


def test_reward_model_names_are_reserved_at_launch(db, admin_user):
    from annotation.models import ExportSnapshot
    from scoring.services import RewardRunError, request_reward_training

    snapshot = ExportSnapshot.objects.create(params={}, status="ready", content_hash="h" * 64)
    request_reward_training(snapshot_id=snapshot.pk, name="rm-a", enqueue=False)
    with pytest.raises(RewardRunError, match="'rm-a' is already the output name") as refused:
        request_reward_training(snapshot_id=snapshot.pk, name="rm-a", enqueue=False)
    assert refused.value.code == "conflict"


GENERATION = {"candidates_per_condition": 1, "base_seed": 3, "inference_steps": 2}


def test_a_generation_whose_candidates_do_not_import_fails_and_names_the_rows(
    seed_round, admin_user, django_capture_on_commit_callbacks, settings
):
    """Ingest refuses every candidate (here: a frame limit below the generator's clip length),
    and the run says so instead of "succeeded": its chunks ended when they handed the videos
    over; the run waits for the imports and, with one pass allowed, does not make them again.

    (It used to re-generate the same videos into a round that already held them, expecting
    duplicates; the tiny generator's videos are not byte-identical from run to run, so that
    failed now and then.)"""
    settings.LABELHUB_MAX_CLIP_FRAMES = 2
    params = {"source_round_id": seed_round.pk, "target_round": "refused", **GENERATION}
    with django_capture_on_commit_callbacks(execute=True):
        run = launch.launch_run(
            kind="generation", params={**params, "chunk_attempts": 1}, created_by=admin_user
        )
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert {c.status for c in run.children.all()} == {Run.Status.SUCCEEDED}
    assert "4 candidates are not in refused after 1 pass(es) over the chunks (4 import errors" in (
        run.error
    )
    assert "frames" in run.error and "generated/run-" in run.error  # names the rows and why
    assert run.artifacts["imported"] == 0 and run.artifacts["import_errors"] == 4
    assert not Clip.objects.filter(round__name="refused").exists()


def test_a_repeated_generation_makes_only_the_candidates_not_yet_in_the_round(
    seed_round, admin_user, django_capture_on_commit_callbacks
):
    """A generation resumed after some of its candidates were imported (or run twice) generates
    only the missing ones, and with none missing loads no generator at all."""
    params = {"source_round_id": seed_round.pk, "target_round": "again", **GENERATION}
    first = run_now(
        django_capture_on_commit_callbacks, kind="generation", params=params, user=admin_user
    )
    assert first.artifacts["imported"] == 4 and first.artifacts["already_in_round"] == 0
    lost = Clip.objects.filter(round__name="again").order_by("pk").last()
    condition_id = lost.condition_id
    lost.delete()  # one candidate did not make it (its clip and candidate link are gone)

    second = run_now(
        django_capture_on_commit_callbacks, kind="generation", params=params, user=admin_user
    )
    assert second.status == Run.Status.SUCCEEDED, second.error
    assert second.artifacts["videos"] == 1 and second.artifacts["imported"] == 1
    assert second.artifacts["already_in_round"] == 3 and second.artifacts["import_errors"] == 0
    regenerated = Clip.objects.get(round__name="again", condition_id=condition_id)
    assert regenerated.candidate.run_id == second.pk
    assert regenerated.candidate.seed == candidate_seed(GENERATION["base_seed"], 0)
    assert Clip.objects.filter(round__name="again").count() == 4
    chunk = next(c for c in second.children.all() if condition_id in c.params["condition_ids"])
    assert "1 of 2 candidates to make (1 already in again or importing)" in chunk.log_tail

    third = run_now(
        django_capture_on_commit_callbacks, kind="generation", params=params, user=admin_user
    )
    assert third.status == Run.Status.SUCCEEDED, third.error
    assert third.artifacts["videos"] == 0 and third.artifacts["already_in_round"] == 4
    assert Clip.objects.filter(round__name="again").count() == 4
