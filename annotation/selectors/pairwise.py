"""Reads for pairwise judging: the judge's view of a task, verdicts, win rates, preference pairs."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db.models import Prefetch, Q

from annotation.models import PairwiseJudgement, PairwiseLease, PairwiseTask
from annotation.selectors.clips import media_url

WIN, TIE, LOSS = "win", "tie", "loss"
MAJORITY = 2  # of the (usually three) judges


def task_for_judge(lease: PairwiseLease) -> dict:
    """What the judge's page shows: the condition and the two clips on their shuffled sides."""
    task = lease.task
    left, right = (
        (task.clip_a_id, task.clip_b_id) if task.a_on_left else (task.clip_b_id, task.clip_a_id)
    )
    return {
        "task_id": task.pk,
        "expires_at": lease.expires_at.isoformat(),
        "prompt": task.condition.prompt,
        "condition_image_url": media_url(left, "condition"),
        "character_reference_url": media_url(left, "character")
        if task.condition.character_reference
        else "",
        "fps": task.clip_a.fps,  # one frame step of the shared player (the clips are transcoded alike)
        "left": {"video_url": media_url(left, "video"), "poster_url": media_url(left, "poster")},
        "right": {"video_url": media_url(right, "video"), "poster_url": media_url(right, "poster")},
    }


def verdict(choices: list[str], *, majority: int = MAJORITY) -> str:
    """ "a" or "b" when at least ``majority`` judges chose it, otherwise "tie"."""
    counts = Counter(choices)
    for side in ("a", "b"):
        if counts[side] >= majority:
            return side
    return "tie"


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (sensible at small n and at 0 or 1)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class WinRateReport:
    source_x: str
    source_y: str
    tasks: int
    wins: int
    ties: int
    losses: int

    def rate(self, outcome: str) -> float | None:
        count = {WIN: self.wins, TIE: self.ties, LOSS: self.losses}[outcome]
        return count / self.tasks if self.tasks else None

    def interval(self, outcome: str) -> tuple[float, float]:
        count = {WIN: self.wins, TIE: self.ties, LOSS: self.losses}[outcome]
        return wilson_interval(count, self.tasks)

    def as_dict(self) -> dict:
        counts = {WIN: self.wins, TIE: self.ties, LOSS: self.losses}
        return {
            "source_x": self.source_x,
            "source_y": self.source_y,
            "tasks": self.tasks,
            **{
                outcome: {
                    "count": n,
                    "rate": self.rate(outcome),
                    "ci95": list(self.interval(outcome)),
                }
                for outcome, n in counts.items()
            },
        }


def _complete_tasks(source_x: str | None = None, source_y: str | None = None):
    tasks = PairwiseTask.objects.filter(judgement_count__gte=1).select_related("clip_a", "clip_b")
    if source_x is not None:
        tasks = tasks.filter(
            Q(clip_a__source_name=source_x, clip_b__source_name=source_y)
            | Q(clip_a__source_name=source_y, clip_b__source_name=source_x)
        )
    return tasks.prefetch_related(
        Prefetch("judgements", queryset=PairwiseJudgement.objects.only("task_id", "choice"))
    ).order_by("pk")


def win_rate(*, source_x: str, source_y: str) -> WinRateReport:
    """Win / tie / loss of ``source_x`` against ``source_y`` over fully judged tasks."""
    return win_rates_against(baseline=source_y, sources=[source_x])[source_x]


def win_rates_against(*, baseline: str, sources: Iterable[str]) -> dict[str, WinRateReport]:
    """``win_rate`` of each of ``sources`` against ``baseline``, in two queries whatever their
    number (the scoreboard asks for one per row)."""
    sources = set(sources) - {baseline}
    tasks = _complete_tasks().filter(
        Q(clip_a__source_name=baseline, clip_b__source_name__in=sources)
        | Q(clip_b__source_name=baseline, clip_a__source_name__in=sources)
    )
    outcomes: dict[str, Counter] = {source: Counter() for source in sources}
    for task in tasks:
        choices = [j.choice for j in task.judgements.all()]
        if len(choices) < task.judges_needed:
            continue
        a, b = task.clip_a.source_name, task.clip_b.source_name
        other = b if a == baseline else a
        winner = verdict(choices)
        if winner == "tie":
            outcomes[other][TIE] += 1
        else:
            outcomes[other][WIN if (a if winner == "a" else b) == other else LOSS] += 1
    return {
        source: WinRateReport(source, baseline, sum(n.values()), n[WIN], n[TIE], n[LOSS])
        for source, n in outcomes.items()
    }


def iter_preference_pairs() -> Iterator[dict]:
    """Human-judged pairs with a majority winner, as preference pairs for training."""
    for task in _complete_tasks():
        choices = [j.choice for j in task.judgements.all()]
        if len(choices) < task.judges_needed:
            continue
        winner = verdict(choices)
        if winner == "tie":
            continue
        win_clip, lose_clip = (
            (task.clip_a, task.clip_b) if winner == "a" else (task.clip_b, task.clip_a)
        )
        yield {
            "task_id": task.pk,
            "condition_id": task.condition_id,
            "winner_clip_id": win_clip.pk,
            "loser_clip_id": lose_clip.pk,
            "winner_source": win_clip.source_name,
            "loser_source": lose_clip.source_name,
            "votes_for_winner": choices.count(winner),
            "judges": len(choices),
        }


def source_pairs() -> list[tuple[str, str]]:
    """Distinct (source, source) pairs that have tasks, for the report's picker."""
    pairs = PairwiseTask.objects.values_list(
        "clip_a__source_name", "clip_b__source_name"
    ).distinct()
    return sorted({tuple(sorted(p)) for p in pairs})
