"""A/B judgements on the Django side: the API refuses bad ones (400), export snapshots carry them per
dimension with judge pseudonyms and the grouped split (a pair across the split or with a clip
outside the snapshot is left out and counted), ``pairs`` and ``joint`` are refused at launch
without judgements on both sides, and a ``pairs`` model trains through the API and shows its
tie-aware accuracy with counts on the reward-model page."""

import csv
import io
import random

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse

from annotation.models import Clip, ClipLabel, Condition, PairwiseTask
from annotation.services.exports import create_snapshot
from annotation.services.pairwise import (
    create_pairwise_tasks,
    lease_next_pair,
    side_to_choice,
    submit_judgement,
)
from labelhub.dimensions import DIMENSION_KEYS
from runs.models import Run
from scoring import services
from scoring.anime_reward.synthetic import make_labelled_clips
from scoring.models import RewardModel
from scoring.services import RewardRunError
from tests.conftest import make_user, store_file
from tests.lead_data import labelled_clip, make_round, sha

pytestmark = [pytest.mark.django_db(transaction=False), pytest.mark.usefixtures("two_threads")]


@pytest.fixture
def judged_round(tmp_path):
    """12 conditions with a hailuo and a vidu clip each (real small videos, rule labels), one
    hailuo-vs-vidu task per condition judged by two judges through the services, who follow the
    labels: the clip rated higher by 0.5 or more wins, otherwise a tie."""
    round_ = make_round("judged")
    clips = make_labelled_clips(tmp_path / "clips", 24, seed=3)
    labels = {}
    for index in range(12):
        condition = Condition.objects.create(
            content_hash=sha(f"cond{index}"),
            image=store_file(clips[2 * index].condition_image_path, f"conditions/c{index}.png"),
            image_sha256=sha(f"image{index}"),
            prompt=f"prompt {index}",
            prompt_sha256=sha(f"p{index}"),
        )
        for offset, source in enumerate(("hailuo", "vidu")):
            synthetic = clips[2 * index + offset]
            clip = labelled_clip(
                round_, condition, synthetic, key=f"{index}-{source}", source_name=source
            )
            labels[clip.pk] = synthetic.labels
    create_pairwise_tasks(source_a="hailuo", source_b="vidu", judges_needed=2, rng=random.Random(0))
    judges = [make_user(f"judge{i}", "annotator") for i in range(2)]

    def side(task, clip_a_score, clip_b_score) -> str:
        gap = clip_a_score - clip_b_score
        wanted = "tie" if abs(gap) < 0.5 else ("a" if gap > 0 else "b")
        return next(s for s in ("left", "right", "tie") if side_to_choice(task, s) == wanted)

    for judge in judges:
        while (lease := lease_next_pair(judge=judge)) is not None:
            task = lease.task
            a, b = labels[task.clip_a_id], labels[task.clip_b_id]
            submit_judgement(
                task_id=task.pk,
                judge=judge,
                side=side(task, sum(a.values()) / 6, sum(b.values()) / 6),
                dimension_sides={key: side(task, a[key], b[key]) for key in DIMENSION_KEYS},
            )
    return round_, judges


def test_the_api_refuses_unknown_dimensions_and_choices(client):
    round_ = make_round("api")
    condition = Condition.objects.create(
        content_hash=sha("c"),
        image="c.png",
        image_sha256=sha("i"),
        prompt="p",
        prompt_sha256=sha("p"),
    )
    for source in ("hailuo", "vidu"):
        Clip.objects.create(
            round=round_,
            condition=condition,
            source_kind="external",
            source_name=source,
            original=f"{source}.mp4",
            original_sha256=sha(source),
            video=f"{source}.mp4",
            status=Clip.Status.READY,
            target_ratings=3,
        )
    task = create_pairwise_tasks(source_a="hailuo", source_b="vidu")[0]
    judge = make_user("judy", "annotator")
    client.force_login(judge)
    assert (
        client.post("/api/pairwise/next/", {}, content_type="application/json").status_code == 200
    )
    url = f"/api/pairwise/{task.pk}/judge/"
    for body, word in (
        ({"choice": "left", "dimensions": {"visual_sharpness": "left"}}, "visual_sharpness"),
        ({"choice": "left", "dimensions": {"visual_appeal": "a"}}, "visual_appeal"),
        ({"choice": "b"}, "choice"),
    ):
        response = client.post(url, body, content_type="application/json")
        assert response.status_code == 400, body
        assert word in response.content.decode()
    assert task.judgements.count() == 0  # nothing stored, nothing exported
    response = client.post(
        url,
        {"choice": "left", "dimensions": {"visual_appeal": "tie"}},
        content_type="application/json",
    )
    assert response.status_code == 201
    assert task.judgements.get().dimension_choices == {"visual_appeal": "tie"}


def _read_csv(snapshot, kind: str) -> list[dict]:
    with default_storage.open(snapshot.files[kind]["name"], "rb") as fh:
        return list(csv.DictReader(io.StringIO(fh.read().decode())))


def test_snapshots_carry_judgements_per_dimension_and_split(judged_round):
    round_, judges = judged_round
    # One task across two conditions on different sides of the split, one with a clip that has
    # no label (not exported): both are judged, neither may reach the snapshot.
    first = create_snapshot(round_ids=[round_.pk], test_fraction=0.25, seed=0)
    rows = _read_csv(first, "labels_csv")
    split_of = {int(r["clip_id"]): r["split"] for r in rows}
    train_clip = next(c for c, s in split_of.items() if s == "train")
    test_clip = next(c for c, s in split_of.items() if s == "test")
    unlabelled = Clip.objects.get(pk=train_clip)
    stray = Clip.objects.create(
        **{
            f.name: getattr(unlabelled, f.name)
            for f in Clip._meta.concrete_fields
            if f.name not in {"id", "original_sha256", "source_name"}
        },
        original_sha256=sha("stray"),
        source_name="stray",
    )
    odd = [
        PairwiseTask.objects.create(
            condition_id=Clip.objects.get(pk=a).condition_id,
            clip_a_id=a,
            clip_b_id=b,
            a_on_left=True,
            judges_needed=1,
        )
        for a, b in ((train_clip, test_clip), (train_clip, stray.pk))
    ]
    for task in odd:
        lease = lease_next_pair(judge=judges[0])
        assert lease.task_id == task.pk
        submit_judgement(task_id=task.pk, judge=judges[0], side="left")

    snapshot = create_snapshot(round_ids=[round_.pk], test_fraction=0.25, seed=0)
    counts = snapshot.row_counts
    judgements = _read_csv(snapshot, "judgements_csv")
    assert {"judgements_jsonl", "judgements_csv", "judgements_parquet"} <= set(snapshot.files)
    # 12 tasks x 2 judges x (overall + six dimensions)
    assert counts["judgements"] == len(judgements) == 12 * 2 * 7
    assert counts["judged_pairs_train"] + counts["judged_pairs_test"] == 12
    assert counts["judged_pairs_test"] == 3  # a quarter of the conditions held out
    assert counts["judged_pairs_cross_split"] == 1 and counts["judged_pairs_not_exported"] == 1
    assert {r["dimension"] for r in judgements} == {"overall", *DIMENSION_KEYS}
    assert {r["choice"] for r in judgements} <= {"a", "b", "tie"}
    for row in judgements:  # both clips of a pair on the row's side of the split
        assert split_of[int(row["clip_a_id"])] == split_of[int(row["clip_b_id"])] == row["split"]
    assert {int(r["task_id"]) for r in judgements}.isdisjoint({t.pk for t in odd})
    # judges appear as pseudonyms, the same for all their rows, never as ids or names
    pseudonyms = {r["judge"] for r in judgements}
    assert len(pseudonyms) == 2 and all(len(p) == 16 for p in pseudonyms)
    assert not pseudonyms & ({str(j.pk) for j in judges} | {j.username for j in judges})
    card = default_storage.open(snapshot.files["card"]["name"]).read().decode()
    assert "across the split" in card or "both sides of the split" in card

    # Each row is the choice the judge made, on the canonical clip_a / clip_b as stored.
    stored = {}
    for task in PairwiseTask.objects.filter(judgement_count__gt=0).exclude(
        pk__in=[t.pk for t in odd]
    ):
        for j in task.judgements.all():
            for key, choice in {"overall": j.choice, **j.dimension_choices}.items():
                stored[(task.pk, j.judge_id, key)] = choice
    by_pseudonym = {}
    for row in judgements:
        by_pseudonym.setdefault(row["judge"], set()).add(
            (int(row["task_id"]), row["dimension"], row["choice"])
        )
    for judge in judges:
        mine = {(t, key, c) for (t, j, key), c in stored.items() if j == judge.pk}
        assert mine in by_pseudonym.values()


def test_pairs_and_joint_are_refused_without_judgements_on_both_sides(judged_round):
    round_, _judges = judged_round
    # All conditions in train (no test side): refused with the counts.
    one_side = create_snapshot(round_ids=[round_.pk], test_fraction=0.0, seed=0)
    for objective in ("pairs", "joint"):
        with pytest.raises(RewardRunError) as error:
            services.request_reward_training(
                snapshot_id=one_side.pk, config={"objective": objective}, enqueue=False
            )
        assert "12 in train and 0 in test" in str(error.value) and objective in str(error.value)
    # No judgements at all: another round
    empty_round = make_round("no-judgements")
    source = Clip.objects.filter(round=round_).first()
    clip = Clip.objects.create(
        **{
            f.name: getattr(source, f.name)
            for f in Clip._meta.concrete_fields
            if f.name not in {"id", "original_sha256", "round"}
        },
        round=empty_round,
        original_sha256=sha("copy"),
    )
    ClipLabel.objects.create(
        clip=clip,
        count=1,
        overall=3,
        **{f"{k}_mean": 3 for k in DIMENSION_KEYS},
        **{f"{k}_std": 0 for k in DIMENSION_KEYS},
    )
    empty = create_snapshot(round_ids=[empty_round.pk], test_fraction=0.0, seed=0)
    with pytest.raises(RewardRunError, match="0 in train and 0 in test"):
        services.request_reward_training(snapshot_id=empty.pk, config={"objective": "pairs"})
    # regression still launches on it, and nothing was queued by the refusals
    assert not Run.objects.exists()
    services.request_reward_training(snapshot_id=empty.pk, enqueue=False)


@pytest.mark.slow
def test_a_pairs_model_trains_through_the_api_and_shows_tie_aware_accuracy(
    client, judged_round, django_capture_on_commit_callbacks
):
    round_, _judges = judged_round
    snapshot = create_snapshot(round_ids=[round_.pk], test_fraction=0.25, seed=0)
    admin = make_user("adam", "admin")
    client.force_login(admin)
    response = client.post(
        reverse("scoring:api_train"),
        {"snapshot_id": snapshot.pk, "config": {"objective": "pairs", "tie_model": "bogus"}},
        content_type="application/json",
    )
    assert response.status_code == 400 and "tie_model" in response.json()["detail"]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("scoring:api_train"),
            {
                "snapshot_id": snapshot.pk,
                "name": "from-judgements",
                "config": {"objective": "pairs", "tie_model": "davidson", "epochs": 3},
            },
            content_type="application/json",
        )
    assert response.status_code == 202
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.status == Run.Status.SUCCEEDED, run.error
    model = RewardModel.objects.get(name="from-judgements")
    assert model.config["comparisons"] == {
        "train": 9 * 2 * 7,
        "test": 3 * 2 * 7,
        "left_out_undecodable": 0,
    }
    assert set(model.config["tie_parameters"]) == set(DIMENSION_KEYS)
    assert all(t["model"] == "davidson" for t in model.config["tie_parameters"].values())
    for key in (*DIMENSION_KEYS, "overall"):
        metrics = model.metrics[key]
        assert metrics["comparisons"] == 3 * 2  # three held-out pairs, two judges
        assert metrics["comparison_accuracy_ties"] is not None
    page = client.get(reverse("scoring:reward_model", args=[model.pk])).content.decode()
    assert 'id="comparison-metrics"' in page and "Accuracy with ties" in page
    assert "Objective <strong>pairs</strong>" in page
    assert "126 train, 42 held out" in page
