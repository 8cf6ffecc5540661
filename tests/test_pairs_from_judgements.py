"""Human A/B judgements become preference pairs whose rewards are the judges' vote shares."""

import pytest

from annotation.models import Clip
from annotation.services.pairwise import (
    create_pairwise_tasks,
    lease_next_pair,
    side_to_choice,
    submit_judgement,
)
from tests.conftest import make_user
from tests.factories import make_ready_clips, make_round
from training.models import PreferencePair
from training.services.pairs import build_round_pairs

pytestmark = pytest.mark.django_db


def test_majority_verdicts_become_pairs_with_vote_share_rewards():
    round_ = make_round()
    # Two clips of one condition from two sources.
    base = make_ready_clips(round_, 1)[0]
    tuned = Clip.objects.create(
        **{
            f.name: getattr(base, f.name)
            for f in Clip._meta.concrete_fields
            if f.name not in {"id", "original_sha256", "source_name"}
        },
        original_sha256="x" * 64,
        source_name="policy:ckpt-1",
    )
    Clip.objects.filter(pk=base.pk).update(source_name="base")
    task = create_pairwise_tasks(source_a="policy:ckpt-1", source_b="base", judges_needed=3)[0]
    judges = [make_user(f"j{i}", "annotator") for i in range(3)]
    for judge, winner_clip in zip(judges, [tuned, tuned, base], strict=True):
        lease = lease_next_pair(judge=judge)
        assert lease.task_id == task.pk
        wanted = "a" if task.clip_a_id == winner_clip.pk else "b"
        side = next(s for s in ("left", "right") if side_to_choice(task, s) == wanted)
        submit_judgement(task_id=task.pk, judge=judge, side=side)

    pairs = build_round_pairs(round_id=round_.pk, origin=PreferencePair.Origin.HUMAN_JUDGEMENTS)
    assert len(pairs) == 1
    pair = pairs[0]
    assert (pair.winner_id, pair.loser_id) == (tuned.pk, base.pk)
    assert pair.winner_reward == pytest.approx(2 / 3) and pair.loser_reward == pytest.approx(1 / 3)
    # A higher minimum gap than the 1/3 the judges gave drops the pair.
    assert (
        build_round_pairs(
            round_id=round_.pk, origin=PreferencePair.Origin.HUMAN_JUDGEMENTS, min_gap=0.5
        )
        == []
    )
