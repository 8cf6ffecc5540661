"""The demo: rendered clips are real, decodable, deterministic videos with a first frame and a prompt
of their own per condition; ``seed_demo`` + ``seed_demo_loop`` (what ``make demo`` runs) leave a
rated round, a reward model with held-out metrics, a GAPO checkpoint, a generated round 2 and
pairwise tasks, and running them again adds nothing (``check_make_demo``).

Building the demo takes minutes, so the suite builds it once: ``tests/test_readme_loop.py`` runs
``check_make_demo`` with its demo workers and then runs the README's commands on that database.
"""

import hashlib
from collections import Counter
from collections.abc import Callable

import av
import numpy as np
from django.conf import global_settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.test import override_settings

from annotation import demo
from annotation.models import (
    Clip,
    Condition,
    ExportSnapshot,
    ImportBatch,
    PairwiseTask,
    Rating,
    Round,
)
from annotation.services.labels import recompute_all_labels
from annotation.services.pairwise import lease_next_pair
from runs.models import Run
from scoring.models import ClipScore, RewardModel
from training import demo as demo_loop
from training.models import Candidate, PolicyCheckpoint, PreferencePair


def test_demo_clip_is_a_decodable_video_with_the_expected_frames(tmp_path):
    frames = demo.render_frames(demo.CONDITIONS[1], "hailuo")
    assert len(frames) == demo.FRAMES == 40
    assert frames[0].shape == (demo.HEIGHT, demo.WIDTH, 3) and frames[0].dtype == np.uint8
    path = tmp_path / "walk.mp4"
    demo.write_mp4(frames, path)

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        assert stream.codec_context.name == "h264"
        assert float(stream.average_rate) == demo.FPS
    assert len(decoded) == demo.FRAMES
    assert decoded[0].shape == (demo.HEIGHT, demo.WIDTH, 3)
    # Lossy, but close to what was rendered (mean absolute error of a few levels out of 255).
    assert np.abs(decoded[5].astype(int) - frames[5].astype(int)).mean() < 6


def test_rendering_is_deterministic_and_generators_differ_from_ground_truth():
    condition = demo.CONDITIONS[0]
    truth = demo.render_frames(condition, "ground_truth")
    assert all(
        np.array_equal(a, b)
        for a, b in zip(truth, demo.render_frames(condition, "ground_truth"), strict=True)
    )
    cog = demo.render_frames(condition, "cogvideox")
    assert np.abs(cog[20].astype(int) - truth[20].astype(int)).mean() > 2  # blur + jitter show
    vidu = demo.render_frames(condition, "vidu")
    assert np.abs(vidu[-1].astype(int) - truth[-1].astype(int)).mean() > 5  # colours drifted


def test_every_condition_has_its_own_first_frame_and_prompt():
    """The grouped split joins clips sharing an image or a prompt: each demo condition must be a
    group of its own, or nothing could be held out."""
    assert len(demo.CONDITIONS) == 12
    assert len({c.prompt for c in demo.CONDITIONS}) == 12
    assert len({c.slug for c in demo.CONDITIONS}) == 12
    first_frames = {
        hashlib.sha256(demo.render_frames(c, "ground_truth")[0].tobytes()).hexdigest()
        for c in demo.CONDITIONS
    }
    assert len(first_frames) == 12
    # Latin square: every character does every motion once.
    for character in demo.CHARACTERS:
        motions = [c.motion for c in demo.CONDITIONS if c.character == character]
        assert sorted(motions) == sorted(demo.MOTIONS)


def _counts() -> dict[str, int]:
    models = (
        Round,
        Clip,
        Condition,
        Rating,
        ImportBatch,
        ExportSnapshot,
        Run,
        RewardModel,
        ClipScore,
        PreferencePair,
        PolicyCheckpoint,
        Candidate,
        PairwiseTask,
        User,
    )
    return {model.__name__: model.objects.count() for model in models}


def check_make_demo(manage: Callable[[str], str]) -> None:
    """``make demo``'s data steps close the loop once, and again add nothing. ``manage(command)``
    runs a ``manage.py`` command on the test database and returns what it printed."""
    out = manage("seed_demo")
    assert "48 imported, 0 error(s)" in out and "annotator-demo" in out
    round_1 = Round.objects.get(name=demo.DEMO_ROUND)
    clips = Clip.objects.filter(round=round_1)
    assert clips.filter(status=Clip.Status.READY).count() == 48
    assert set(clips.values_list("frames", "fps", "width", "height")) == {(40, 16.0, 480, 320)}
    assert Counter(clips.values_list("source_name", flat=True)) == dict.fromkeys(demo.SOURCES, 12)
    assert clips.values("condition").distinct().count() == Condition.objects.count() == 12
    assert Rating.objects.count() == 96  # two demo raters, every clip
    # The demo's commands hash as production does (the tests' own users use a fast hasher).
    with override_settings(PASSWORD_HASHERS=global_settings.PASSWORD_HASHERS):
        for username, password in (
            ("annotator", "annotator-demo"),
            ("lead", "lead-demo"),
            ("admin", "admin-demo"),
        ):
            assert authenticate(username=username, password=password) is not None

    out = manage("seed_demo_loop")
    assert "the loop is closed" in out
    runs = Run.objects.all()
    assert {run.status for run in runs} == {Run.Status.SUCCEEDED}
    # One round run, launched as a user launches one; its steps are its children, and
    # generation and scoring fanned out into chunks of their own.
    round_run = runs.get(parent__isnull=True)
    assert round_run.kind == "round"
    assert list(round_run.children.order_by("pk").values_list("kind", flat=True)) == [
        "reward_training",
        "scoring",
        "pairs",
        "gapo",
        "generation",
        "scoring",
        "generation",  # the evaluation step: the base generator's candidates, same seeds,
        "scoring",  # scored with the round's reward model
    ]
    chunk_kinds = set(runs.filter(parent__parent=round_run).values_list("kind", flat=True))
    assert chunk_kinds == {"scoring_chunk", "generation_chunk"}
    assert set(runs.values_list("created_by__username", flat=True)) == {"admin"}

    # The reward model page has held-out clips to show: whole conditions in the test split.
    reward_model = RewardModel.objects.get(name=demo_loop.REWARD_MODEL_NAME)
    assert reward_model.config["test_clips"] == 12 and reward_model.config["train_clips"] == 36
    assert len(reward_model.evaluation["clips"]) == 12
    assert "spearman" in reward_model.metrics["overall"]
    # Round 1 and round 2's 24 candidates, scored with the same model for the scoreboard.
    # and the base generator's twins (same condition and seed) of the 3 evaluated candidates.
    assert ClipScore.objects.filter(reward_model=reward_model, error="").count() == 48 + 24 + 3

    gapo = runs.get(kind="gapo")
    assert len(gapo.metrics) == demo_loop.ROUND_PARAMS["steps"]  # the run page's plots
    checkpoint = PolicyCheckpoint.objects.get(name=demo_loop.CHECKPOINT_NAME)
    assert PreferencePair.objects.filter(round=round_1).count() == 12

    # Round 2: K candidates per condition from the policy, ready to rate.
    round_2 = Round.objects.get(name=demo_loop.NEXT_ROUND)
    generated = Clip.objects.filter(round=round_2)
    k = demo_loop.ROUND_PARAMS["candidates"]
    assert generated.filter(status=Clip.Status.READY).count() == 12 * k
    assert Counter(generated.values_list("condition_id", flat=True)) == {
        c: k for c in Condition.objects.values_list("pk", flat=True)
    }
    assert set(generated.values_list("source_name", flat=True)) == {f"policy:{checkpoint.name}"}
    assert all(clip.poster.name for clip in generated)
    assert Candidate.objects.filter(checkpoint=checkpoint).count() == 12 * k

    # The checkpoint against the base on the 3 held-out conditions, judged by 3 demo raters: the
    # scoreboard's win rate has a point.
    evaluated = PairwiseTask.objects.filter(batch=f"{checkpoint.name} vs base")
    assert evaluated.count() == 3 and set(evaluated.values_list("judgement_count", flat=True)) == {
        3
    }
    from training.selectors import scoreboard

    board = scoreboard()
    assert board["baseline"] == "base"
    (evaluation,) = board["human_evaluations"]
    assert evaluation["evaluation_tasks"] == 3 and evaluation["tasks_awaiting_judges"] == 0
    policy_row = next(r for r in board["rows"] if r["source"] == f"policy:{checkpoint.name}")
    assert policy_row["win_rate"]["tasks"] == 3

    # The judge page has work: a task is leased to the annotator.
    assert PairwiseTask.objects.filter(batch=demo_loop.PAIRWISE_BATCH).count() == 12
    assert lease_next_pair(judge=User.objects.get(username="annotator")) is not None

    before = _counts()
    out = manage("seed_demo") + manage("seed_demo_loop")
    assert "already imported" in out and f"round: run {round_run.pk} already succeeded" in out
    after = _counts()
    assert after == {**before, "User": before["User"]}, "a second make demo added rows"
    assert recompute_all_labels(dry_run=True).ok
