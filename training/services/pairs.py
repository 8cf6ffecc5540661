"""Preference pairs for a round: rewards from a reward model's ClipScores or from human ClipLabels,
best vs worst per condition (``training.alignment.pairs.build_pairs``), stored as PreferencePair rows and
exported as JSONL for the trainer."""

from __future__ import annotations

from django.db import transaction

from annotation.models import Clip, ClipLabel, Round
from annotation.selectors.pairwise import iter_preference_pairs
from labelhub.dimensions import score_to_unit
from labelhub.storage import local_path
from scoring.models import ClipScore, RewardModel
from training.alignment.pairs import Candidate, Pair, build_pairs
from training.models import PreferencePair

Origin = PreferencePair.Origin


def round_candidates(
    *, round_id: int, origin: str, reward_model_id: int | None = None
) -> list[Candidate]:
    """Every ready clip of the round that has a reward, as a pairing candidate (reward in [0, 1])."""
    clips = Clip.objects.filter(round_id=round_id, status=Clip.Status.READY)
    if origin == Origin.REWARD_MODEL:
        if reward_model_id is None:
            raise ValueError("pairs from a reward model need reward_model_id")
        rewards = dict(
            ClipScore.objects.filter(
                clip__in=clips, reward_model_id=reward_model_id, overall__isnull=False
            ).values_list("clip_id", "overall")
        )
    elif origin == Origin.HUMAN_LABELS:
        rewards = {
            clip_id: score_to_unit(overall)
            for clip_id, overall in ClipLabel.objects.filter(
                clip__in=clips, count__gt=0
            ).values_list("clip_id", "overall")
        }
    else:
        raise ValueError(
            f"origin must be {Origin.REWARD_MODEL} or {Origin.HUMAN_LABELS}; got {origin!r}"
        )
    return [
        Candidate(
            clip_id=clip.pk,
            condition_id=clip.condition_id,
            reward=rewards[clip.pk],
            video=clip.original.name,
            prompt=clip.condition.prompt,
            first_frame=clip.condition.image.name,
        )
        for clip in clips.filter(pk__in=rewards).select_related("condition").order_by("pk")
    ]


def build_round_pairs(
    *,
    round_id: int,
    origin: str,
    reward_model_id: int | None = None,
    min_gap: float = 0.0,
    run_id: int | None = None,
) -> list[PreferencePair]:
    """Replace the round's pairs of this origin (and reward model) with freshly built ones."""
    round_ = Round.objects.get(pk=round_id)
    if reward_model_id is not None:
        RewardModel.objects.get(pk=reward_model_id)  # a clear DoesNotExist rather than an FK error
    if origin == Origin.HUMAN_JUDGEMENTS:
        pairs = [p for p in judged_pairs(round_id=round_id) if p.reward_difference >= min_gap]
    else:
        pairs = build_pairs(
            round_candidates(round_id=round_id, origin=origin, reward_model_id=reward_model_id),
            min_gap=min_gap,
        )
    with transaction.atomic():
        PreferencePair.objects.filter(
            round=round_, origin=origin, reward_model_id=reward_model_id
        ).delete()
        return PreferencePair.objects.bulk_create(
            PreferencePair(
                round=round_,
                condition_id=p.condition_id,
                winner_id=p.winner_clip_id,
                loser_id=p.loser_clip_id,
                winner_reward=p.winner_reward,
                loser_reward=p.loser_reward,
                origin=origin,
                reward_model_id=reward_model_id,
                run_id=run_id,
            )
            for p in pairs
        )


def judged_pairs(*, round_id: int) -> list[Pair]:
    """Pairs from human A/B judgements of the round's clips, where a majority picked a winner.

    The rewards are the share of judges who preferred each clip (2 of 3 -> 0.67 vs 0.33), so GAPO's
    gap weight grows with how clearly the humans agreed.
    """
    in_round = set(Clip.objects.filter(round_id=round_id).values_list("pk", flat=True))
    pairs = []
    for judged in iter_preference_pairs():
        if judged["winner_clip_id"] not in in_round or judged["loser_clip_id"] not in in_round:
            continue
        share = judged["votes_for_winner"] / judged["judges"]
        pairs.append(
            Pair(
                condition_id=judged["condition_id"],
                winner_clip_id=judged["winner_clip_id"],
                loser_clip_id=judged["loser_clip_id"],
                winner_reward=share,
                loser_reward=1 - share,
            )
        )
    return pairs


def pairs_for_training(
    *, round_id: int, origin: str | None = None, reward_model_id: int | None = None
) -> list[Pair]:
    """The round's stored pairs as trainer records with local file paths."""
    rows = PreferencePair.objects.filter(round_id=round_id).select_related(
        "winner", "loser", "condition"
    )
    if origin:
        rows = rows.filter(origin=origin)
    if reward_model_id is not None:
        rows = rows.filter(reward_model_id=reward_model_id)
    return [
        Pair(
            condition_id=row.condition_id,
            winner_clip_id=row.winner_id,
            loser_clip_id=row.loser_id,
            winner_reward=row.winner_reward,
            loser_reward=row.loser_reward,
            winner_video=local_path(row.winner.original.name),
            loser_video=local_path(row.loser.original.name),
            prompt=row.condition.prompt,
            first_frame=local_path(row.condition.image.name),
        )
        for row in rows.order_by("condition_id", "pk")
    ]
