"""Pairwise judging: two clips of one condition side by side, A / B / tie, three judges a task.

Assignment is the rating queue's (``annotation.services.lease_queue``): a task row is locked with
``FOR UPDATE SKIP LOCKED`` before a lease or a judgement of it is written, so concurrent judges
never over-fill a task or wait on each other; a judge never judges one task twice; leases expire.
Judgements are stored against the canonical clip_a / clip_b; the page's left / right sides are
shuffled per task (``a_on_left``) and mapped back here. As with ratings, a judge judges only a
task leased to them (a lapsed lease still counts while the task has room), so judges cannot
choose their pairs; a task with a pulled clip is neither handed out nor judged.
"""

from __future__ import annotations

import random

from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import Clip, PairwiseJudgement, PairwiseLease, PairwiseTask
from annotation.services.lease_queue import CANDIDATE_BATCH, claim_next
from labelhub.dimensions import DIMENSION_KEYS
from labelhub.errors import ServiceError

SIDES = ("left", "right", "tie")
DEFAULT_JUDGES = 3


class PairwiseError(ServiceError):
    """A pairwise task or judgement that cannot be made; ``code`` says why."""


def create_pairwise_tasks(
    *,
    source_a: str,
    source_b: str,
    round_ids: list[int] | None = None,
    judges_needed: int = DEFAULT_JUDGES,
    batch: str = "",
    rng: random.Random | None = None,
) -> list[PairwiseTask]:
    """One task per condition that has a ready clip from each source (first clip by id each);
    pairs that already have a task are left alone."""
    if source_a == source_b:
        raise PairwiseError("compare two different sources")
    if judges_needed < 1:
        raise PairwiseError("judges_needed must be at least 1")
    rng = rng or random.SystemRandom()
    clips = Clip.objects.filter(status=Clip.Status.READY, source_name__in=[source_a, source_b])
    if round_ids is not None:
        clips = clips.filter(round_id__in=round_ids)
    first: dict[tuple[int, str], int] = {}
    for clip_id, condition_id, source in clips.order_by("id").values_list(
        "id", "condition_id", "source_name"
    ):
        first.setdefault((condition_id, source), clip_id)
    existing = set(PairwiseTask.objects.values_list("clip_a_id", "clip_b_id"))
    tasks = []
    for condition_id in sorted({c for c, _s in first}):
        a, b = first.get((condition_id, source_a)), first.get((condition_id, source_b))
        if a is None or b is None or (a, b) in existing or (b, a) in existing:
            continue
        tasks.append(
            PairwiseTask(
                condition_id=condition_id,
                clip_a_id=a,
                clip_b_id=b,
                a_on_left=rng.random() < 0.5,
                judges_needed=judges_needed,
                batch=batch[:200],
            )
        )
    return PairwiseTask.objects.bulk_create(tasks)


def create_tasks_for_clip_pairs(
    *,
    clip_pairs: list[tuple[int, int]],
    judges_needed: int = DEFAULT_JUDGES,
    batch: str = "",
    rng: random.Random | None = None,
) -> list[PairwiseTask]:
    """One task per given (clip, clip) of one condition, sides shuffled per task; a pair that
    already has a task (either way round) is left alone. Returns every pair's task, in order."""
    if judges_needed < 1:
        raise PairwiseError("judges_needed must be at least 1")
    rng = rng or random.SystemRandom()
    ids = {clip_id for pair in clip_pairs for clip_id in pair}
    condition_of = dict(Clip.objects.filter(pk__in=ids).values_list("pk", "condition_id"))
    for a, b in clip_pairs:
        if a == b or a not in condition_of or b not in condition_of:
            raise PairwiseError(f"clips {a} and {b} are not two existing clips")
        if condition_of[a] != condition_of[b]:
            raise PairwiseError(f"clips {a} and {b} are of different conditions")
    existing = {
        frozenset((task.clip_a_id, task.clip_b_id)): task
        for task in PairwiseTask.objects.filter(clip_a_id__in=ids, clip_b_id__in=ids)
    }
    new = [
        PairwiseTask(
            condition_id=condition_of[a],
            clip_a_id=a,
            clip_b_id=b,
            a_on_left=rng.random() < 0.5,
            judges_needed=judges_needed,
            batch=batch[:200],
        )
        for a, b in clip_pairs
        if frozenset((a, b)) not in existing
    ]
    for task in PairwiseTask.objects.bulk_create(new):
        existing[frozenset((task.clip_a_id, task.clip_b_id))] = task
    return [existing[frozenset(pair)] for pair in clip_pairs]


def lease_next_pair(*, judge, exclude: list[int] | tuple = (), now=None) -> PairwiseLease | None:
    """The judge's lease on their next task (an active one first), or None when none is left."""
    now = now or timezone.now()
    exclude = [int(t) for t in exclude]
    held = (
        PairwiseLease.objects.filter(judge=judge, expires_at__gt=now)
        .exclude(task_id__in=exclude)
        .select_related("task__condition", "task__clip_a")
        .order_by("created_at", "pk")
        .first()
    )
    if held is not None:
        return held
    PairwiseLease.objects.filter(judge=judge, expires_at__lte=now).delete()
    params = {"judge": judge.pk, "now": now, "limit": CANDIDATE_BATCH}

    def take(skip: list[int]) -> tuple[list[int], int | None]:
        with connection.cursor() as cursor:
            cursor.execute(_TAKE_SQL, {**params, "exclude": skip})
            return cursor.fetchone()

    def any_open(skip: list[int]) -> bool:
        with connection.cursor() as cursor:
            cursor.execute(_ANY_OPEN_SQL, {**params, "exclude": skip})
            return cursor.fetchone()[0]

    lease_id = claim_next(take=take, any_open=any_open, exclude=exclude)
    if lease_id is None:
        return None
    return PairwiseLease.objects.select_related("task__condition", "task__clip_a").get(pk=lease_id)


# Open tasks for this judge: both clips ready, not excluded, not judged or leased by them, with
# room (judgements plus active leases below the judges needed).
_OPEN_TASKS = """
    FROM annotation_pairwisetask t
    JOIN annotation_clip a ON a.id = t.clip_a_id
    JOIN annotation_clip b ON b.id = t.clip_b_id
   WHERE a.status = 'ready' AND b.status = 'ready'
     AND NOT (t.id = ANY(%(exclude)s::bigint[]))
     AND NOT EXISTS (SELECT 1 FROM annotation_pairwisejudgement j
                      WHERE j.task_id = t.id AND j.judge_id = %(judge)s)
     AND NOT EXISTS (SELECT 1 FROM annotation_pairwiselease l
                      WHERE l.task_id = t.id AND l.judge_id = %(judge)s)
     AND t.judgement_count + (SELECT count(*) FROM annotation_pairwiselease l
                               WHERE l.task_id = t.id AND l.expires_at > %(now)s) < t.judges_needed
"""
_ANY_OPEN_SQL = f"SELECT EXISTS (SELECT 1 {_OPEN_TASKS})"
# ``lease_queue``'s take: lock a batch in queue order (most judged first), lease the first with
# room counted once locked (``annotation_pairwise_slots_taken``), return the locked ids and the
# new lease's id.
_TAKE_SQL = f"""
    WITH candidates AS MATERIALIZED (
        SELECT t.id, t.judgement_count, t.judges_needed, t.lease_minutes
        {_OPEN_TASKS}
         ORDER BY t.judgement_count DESC, t.id
         LIMIT %(limit)s
           FOR UPDATE OF t SKIP LOCKED
    ), pick AS (
        SELECT t.id, t.lease_minutes FROM candidates t
         WHERE t.judgement_count + annotation_pairwise_slots_taken(t.id, %(now)s) < t.judges_needed
         ORDER BY t.judgement_count DESC, t.id
         LIMIT 1
    ), l AS (
        INSERT INTO annotation_pairwiselease (task_id, judge_id, created_at, expires_at)
        SELECT id, %(judge)s, %(now)s, %(now)s + make_interval(mins => lease_minutes) FROM pick
            ON CONFLICT (task_id, judge_id) DO NOTHING
        RETURNING id
    )
    SELECT ARRAY(SELECT id FROM candidates), (SELECT id FROM l)
"""


def _active_leases(task_id: int, *, now, exclude_judge_id: int | None = None) -> int:
    leases = PairwiseLease.objects.filter(task_id=task_id, expires_at__gt=now)
    if exclude_judge_id is not None:
        leases = leases.exclude(judge_id=exclude_judge_id)
    return leases.count()


def side_to_choice(task: PairwiseTask, side: str) -> str:
    """Map what the judge saw (left / right / tie) to the canonical a / b / tie."""
    if side not in SIDES:
        raise PairwiseError(f"choice must be one of {', '.join(SIDES)}, got {side!r}")
    if side == "tie":
        return PairwiseJudgement.Choice.TIE
    left_is_a = task.a_on_left
    return (
        PairwiseJudgement.Choice.A if (side == "left") == left_is_a else PairwiseJudgement.Choice.B
    )


def submit_judgement(
    *,
    task_id: int,
    judge,
    side: str,
    dimension_sides: dict[str, str] | None = None,
    seconds_spent: float = 0.0,
    now=None,
) -> PairwiseJudgement:
    """Save one judge's verdict (screen sides) on a task leased to them, locking the task first."""
    now = now or timezone.now()
    dimension_sides = dimension_sides or {}
    unknown = sorted(set(dimension_sides) - set(DIMENSION_KEYS))
    if unknown:
        raise PairwiseError(f"unknown dimension(s) {', '.join(unknown)}")
    seconds = float(seconds_spent or 0)
    if seconds < 0:
        raise PairwiseError("seconds_spent must not be negative")
    with transaction.atomic():
        task = (
            PairwiseTask.objects.select_for_update(of=("self",))
            .select_related("clip_a", "clip_b")
            .filter(pk=task_id)
            .first()
        )
        if task is None:
            raise PairwiseError(f"pairwise task {task_id} does not exist", code="not_found")
        if PairwiseJudgement.objects.filter(task=task, judge=judge).exists():
            raise PairwiseError("you have already judged this pair", code="conflict")
        lease = PairwiseLease.objects.filter(task=task, judge=judge).first()
        if lease is None:
            raise PairwiseError(
                "you do not hold this pair: ask for your next pair (POST /api/pairwise/next/) "
                "and judge the one you are given",
                code="forbidden",
            )
        if Clip.Status.PULLED in (task.clip_a.status, task.clip_b.status):
            raise PairwiseError("a clip of this pair was pulled from rating", code="conflict")
        if (
            lease.expires_at <= now
            and task.judgement_count + _active_leases(task.pk, now=now, exclude_judge_id=judge.pk)
            >= task.judges_needed
        ):
            raise PairwiseError(
                "your lease on this pair expired and it went to other judges", code="conflict"
            )
        try:
            with transaction.atomic():
                judgement = PairwiseJudgement.objects.create(
                    task=task,
                    judge=judge,
                    choice=side_to_choice(task, side),
                    dimension_choices={
                        key: side_to_choice(task, value)
                        for key, value in sorted(dimension_sides.items())
                    },
                    seconds_spent=seconds,
                )
        except IntegrityError:
            raise PairwiseError("you have already judged this pair", code="conflict") from None
        PairwiseTask.objects.filter(pk=task.pk).update(judgement_count=F("judgement_count") + 1)
        PairwiseLease.objects.filter(task=task, judge=judge).delete()
    return judgement
