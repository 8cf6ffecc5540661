"""launch_run from the shell: validated parameters, run executed by the (eager) gpu task, progress shown."""

import uuid

import pytest
from django.core.management import CommandError, call_command

from annotation.models import Clip
from annotation.services.assignment import lease_next_clip
from annotation.services.ratings import submit_rating
from runs.models import Run
from tests.conftest import make_user
from tests.factories import make_ready_clips, make_round, scores
from training.models import PreferencePair

pytestmark = pytest.mark.django_db(transaction=True)


def test_launch_pairs_from_human_labels_and_wait(capsys):
    round_ = make_round(ratings_per_clip=1)
    good, bad = make_ready_clips(round_, 2)
    Clip.objects.filter(pk=bad.pk).update(condition=good.condition)
    rater = make_user("r", "annotator")
    # Ratings need the rater's lease (issue 10): the queue hands out both clips, in pk order.
    assert lease_next_clip(round_id=round_.pk, annotator=rater).clip_id == good.pk
    assert lease_next_clip(round_id=round_.pk, annotator=rater, exclude=[good.pk]).clip_id == bad.pk
    submit_rating(clip_id=good.pk, annotator=rater, scores=scores(5), idempotency_key=uuid.uuid4())
    submit_rating(clip_id=bad.pk, annotator=rater, scores=scores(2), idempotency_key=uuid.uuid4())

    call_command("launch_run", "pairs", f"round_id={round_.pk}", "origin=human_labels", "--wait")
    out = capsys.readouterr().out
    assert "succeeded" in out
    pair = PreferencePair.objects.get()
    assert (pair.winner_id, pair.loser_id) == (good.pk, bad.pk)
    assert (pair.winner_reward, pair.loser_reward) == (pytest.approx(1.0), pytest.approx(0.25))
    assert Run.objects.get().status == Run.Status.SUCCEEDED


def test_launch_rejects_bad_parameters_with_a_clear_error():
    with pytest.raises(CommandError, match="round_id is required"):
        call_command("launch_run", "pairs", "origin=human_labels")
    with pytest.raises(CommandError, match="unknown parameter"):
        call_command(
            "launch_run",
            "pairs",
            f"round_id={make_round().pk}",
            "origin=human_labels",
            "colour=red",
        )
    assert not Run.objects.exists()


def test_gapo_launch_checks_the_checkpoint_it_starts_from(tmp_path):
    from training.models import PolicyCheckpoint

    round_ = make_round(ratings_per_clip=1)
    good, bad = make_ready_clips(round_, 2)
    Clip.objects.filter(pk=bad.pk).update(condition=good.condition)
    PreferencePair.objects.create(
        round=round_,
        condition=good.condition,
        winner=good,
        loser=bad,
        winner_reward=1.0,
        loser_reward=0.0,
        origin="human_labels",
    )
    base = ["gapo", f"round_id={round_.pk}", "origin=human_labels"]
    with pytest.raises(CommandError, match="policy checkpoint 999 does not exist"):
        call_command("launch_run", *base, "init_checkpoint_id=999")
    empty = PolicyCheckpoint.objects.create(
        name="empty", base_preset="tiny", lora_path="models/policy/nothing-here"
    )
    with pytest.raises(CommandError, match="init_lora has no"):
        call_command("launch_run", *base, f"init_checkpoint_id={empty.pk}")
    assert not Run.objects.exists()
