"""Which clip an annotator rates next.

Each clip needs ``Clip.target_ratings`` current ratings, never two from one annotator. An
annotator holds a clip through a Lease that expires (the round's ``lease_minutes``); an expired
lease frees its slot. The choice runs in Postgres through the shared lease queue
(``annotation.services.lease_queue``): candidate clips are locked with ``SELECT ... FOR UPDATE
SKIP LOCKED`` so concurrent annotators never wait on or take the same slot, and every lease and
every rating of a clip is created while holding that clip's row lock, so the slot count
re-checked under the lock is exact.

The hot path is two statements, in autocommit: one reads everything about the annotator in the
round (the round's settings and team, their leases with the clips' payload, their rating counts
for progress and the gold rate), and one locks a batch of candidates and leases the first with
room, returning its payload (``lease_queue``: why one statement is safe). The SQL is written out
here because the ORM would need a statement per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from annotation.models import Clip, Condition, Lease, Round
from annotation.selectors.clips import (
    annotator_progress,
    cached_round_totals,
    remember_round_totals,
    round_totals_subquery,
)
from annotation.services.gold import gold_is_due
from annotation.services.lease_queue import CANDIDATE_BATCH, claim_next
from labelhub.errors import ServiceError

# The clip on screen plus the next one, already fetched so it plays without a wait.
MAX_ACTIVE_LEASES_PER_ROUND = 2


class AssignmentError(ServiceError):
    """The round cannot hand out clips to this annotator; ``code`` says why: ``not_found`` (no
    such round), ``conflict`` (closed), ``forbidden`` (open to a team the annotator is not in)."""

    code = "not_found"


@dataclass(frozen=True)
class NextClip:
    """The annotator's next lease (None when the round has nothing left for them) and their
    progress in the round (``annotation.selectors.clips.annotator_progress``'s shape)."""

    lease: Lease | None
    progress: dict


def lease_next_clip(
    *, round_id: int, annotator, exclude: list[int] | tuple = (), now=None
) -> Lease | None:
    """Return the annotator's lease on their next clip in the round, or None when none is left.

    An active lease the annotator already holds is returned first (a reload shows the same clip);
    ``exclude`` lists clips the client already shows, to fetch the one after.
    """
    return next_clip(round_id=round_id, annotator=annotator, exclude=exclude, now=now).lease


def next_clip(*, round_id: int, annotator, exclude: list[int] | tuple = (), now=None) -> NextClip:
    """``lease_next_clip`` plus the annotator's progress, counted in the same statements."""
    now = now or timezone.now()
    exclude = [int(c) for c in exclude]
    totals = cached_round_totals(round_id)
    state = _read_state(round_id=round_id, annotator_id=annotator.pk, now=now, totals=totals)
    if state is None:
        raise AssignmentError(f"round {round_id} does not exist", code="not_found")
    if state.status != Round.Status.OPEN:
        raise AssignmentError(f"round '{state.name}' is closed", code="conflict")
    if state.restricted and not state.member:
        raise AssignmentError(
            f"round '{state.name}' is open to a chosen team only", code="forbidden"
        )
    progress = annotator_progress(
        round_id=round_id,
        annotator=annotator,
        rated_by_me=state.rated,
        totals=totals or state.totals,
    )

    held = [
        lease
        for lease in state.leases
        if lease.expires_at > now and lease.clip.status == Clip.Status.READY
    ]
    for lease in held:
        if lease.clip_id not in exclude:
            return NextClip(lease, progress)
    if len(held) >= MAX_ACTIVE_LEASES_PER_ROUND:
        return NextClip(None, progress)

    queue = _ClipQueue(
        round_id=round_id,
        annotator_id=annotator.pk,
        queue_order=state.queue_order,
        now=now,
        expires_at=now + timedelta(minutes=state.lease_minutes),
        clear_expired=any(lease.expires_at <= now for lease in state.leases),
    )
    gold_due = state.gold_open and gold_is_due(
        gold_rate=state.gold_rate,
        annotator_id=annotator.pk,
        round_id=round_id,
        served=state.rated + len(held),
        gold_served=state.gold_rated + sum(lease.is_gold for lease in held),
    )
    lease = None
    if gold_due:  # from the gold pool at the round's rate; locked by others: the normal pool
        _locked, lease = queue.take(exclude, gold=True)
    if lease is None:
        lease = claim_next(take=queue.take, any_open=queue.any_open, exclude=exclude)
    return NextClip(lease, progress)


# --- the annotator's state in the round: one statement -------------------------------------------

# Fields of the clip and its condition that the annotate page shows (selectors.clips's
# ``annotator_clip_payload``), read with every lease so no further query is needed.
_CLIP_FIELDS = ("id", "round_id", "condition_id", "status", "frames", "fps", "width", "height")
_CLIP_FIELDS += ("duration", "video", "poster", "rating_count", "target_ratings")
_CONDITION_FIELDS = ("id", "prompt", "image", "character_reference")
_LEASE_COLUMNS = ", ".join(
    ["l.id", "l.clip_id", "l.created_at", "l.expires_at", "(g.clip_id IS NOT NULL)"]
    + [f"c.{name}" for name in _CLIP_FIELDS]
    + [f"d.{name}" for name in _CONDITION_FIELDS]
)
_LEASE_JOINS = """
    JOIN annotation_clip c ON c.id = l.clip_id
    JOIN annotation_condition d ON d.id = c.condition_id
    LEFT JOIN annotation_goldreference g ON g.clip_id = c.id
"""

# One row per lease of the annotator in the round (or one row with NULL lease columns), each
# carrying the round's settings, whether it is restricted to a team and the annotator is in it,
# the annotator's current ratings in the round (for progress and the gold rate) and whether an
# unseen gold clip is left. The round totals join in only when the shared cache has none.
_STATE_SQL = """
    WITH rated AS (
        SELECT count(*) AS n, count(g.clip_id) AS gold
          FROM annotation_rating t
          JOIN annotation_clip c ON c.id = t.clip_id
          LEFT JOIN annotation_goldreference g ON g.clip_id = t.clip_id
         WHERE t.annotator_id = %(me)s AND t.is_current AND c.round_id = %(round)s
    )
    SELECT r.name, r.status, r.lease_minutes, r.gold_rate, r.queue_order,
           EXISTS (SELECT 1 FROM annotation_round_annotators m WHERE m.round_id = r.id),
           EXISTS (SELECT 1 FROM annotation_round_annotators m
                    WHERE m.round_id = r.id AND m.user_id = %(me)s),
           rated.n, rated.gold,
           CASE WHEN r.gold_rate > 0 THEN EXISTS (
               SELECT 1 FROM annotation_clip c JOIN annotation_goldreference g ON g.clip_id = c.id
                WHERE c.round_id = r.id AND c.status = 'ready' AND {unseen}
           ) ELSE false END
           {totals_columns},
           {lease_columns}
      FROM annotation_round r
     CROSS JOIN rated
     {totals_join}
      LEFT JOIN (annotation_lease l {lease_joins})
        ON c.round_id = r.id AND l.annotator_id = %(me)s
     WHERE r.id = %(round)s
     ORDER BY l.created_at, l.id
"""

# A clip the annotator has not rated, skipped or been leased.
_UNSEEN = """
    NOT EXISTS (SELECT 1 FROM annotation_rating t WHERE t.clip_id = c.id AND t.annotator_id = %(me)s)
    AND NOT EXISTS (SELECT 1 FROM annotation_skip s WHERE s.clip_id = c.id AND s.annotator_id = %(me)s)
    AND NOT EXISTS (SELECT 1 FROM annotation_lease l WHERE l.clip_id = c.id AND l.annotator_id = %(me)s)
"""


def _state_sql(*, with_totals: bool) -> str:
    return _STATE_SQL.format(
        unseen=_UNSEEN,
        totals_columns=", t.done, t.target, t.clips_left" if with_totals else "",
        totals_join=f"CROSS JOIN ({round_totals_subquery('%(round)s')}) t" if with_totals else "",
        lease_columns=_LEASE_COLUMNS,
        lease_joins=_LEASE_JOINS,
    )


_STATE_SQL_CACHED_TOTALS = _state_sql(with_totals=False)
_STATE_SQL_WITH_TOTALS = _state_sql(with_totals=True)


@dataclass
class _State:
    name: str
    status: str
    lease_minutes: int
    gold_rate: float
    queue_order: str
    restricted: bool
    member: bool
    rated: int
    gold_rated: int
    gold_open: bool
    totals: dict | None
    leases: list[Lease]


def _read_state(*, round_id: int, annotator_id: int, now, totals: dict | None) -> _State | None:
    sql = _STATE_SQL_CACHED_TOTALS if totals is not None else _STATE_SQL_WITH_TOTALS
    with connection.cursor() as cursor:
        cursor.execute(sql, {"round": round_id, "me": annotator_id, "now": now})
        rows = cursor.fetchall()
    if not rows:
        return None
    first = rows[0]
    state = _State(*first[:10], totals=None, leases=[])
    rest = 10
    if totals is None:
        done, target, left = first[10:13]
        state.totals = remember_round_totals(
            round_id, name=state.name, done=done, target=target, left=left
        )
        rest = 13
    state.leases = [
        _lease_from_row(row[rest:], annotator_id=annotator_id)
        for row in rows
        if row[rest] is not None
    ]
    return state


def _lease_from_row(row, *, annotator_id: int) -> Lease:
    """A Lease with its clip and condition, from ``_LEASE_COLUMNS`` (the others load if read)."""
    lease_id, clip_id, created_at, expires_at, is_gold = row[:5]
    clip_end = 5 + len(_CLIP_FIELDS)
    lease = instance_from_db(
        Lease,
        id=lease_id,
        clip_id=clip_id,
        annotator_id=annotator_id,
        created_at=created_at,
        expires_at=expires_at,
    )
    lease.clip = instance_from_db(Clip, **dict(zip(_CLIP_FIELDS, row[5:clip_end], strict=True)))
    lease.clip.condition = instance_from_db(
        Condition, **dict(zip(_CONDITION_FIELDS, row[clip_end:], strict=True))
    )
    lease.is_gold = is_gold  # read by the gold rate; not a model field
    return lease


def instance_from_db(model, **values):
    """A model instance as the ORM would load it with ``only(*values)`` (others are deferred)."""
    names = [f.attname for f in model._meta.concrete_fields if f.attname in values]
    return model.from_db(connection.alias, names, [values[name] for name in names])


# --- the queue: lock a batch, lease the first with room, in one statement -----------------------

# The round's queue order: closest to completion (fills clips up, the default), or what the
# latest reward model is least sure of / disagrees with humans on most (scoring computes both,
# ``set_queue_signals`` stores them).
QUEUE_ORDERS = {
    Round.QueueOrder.COMPLETION: "c.rating_count DESC, c.id",
    Round.QueueOrder.UNCERTAINTY: "c.model_uncertainty DESC NULLS LAST, c.rating_count DESC, c.id",
    Round.QueueOrder.DISAGREEMENT: (
        "c.model_disagreement DESC NULLS LAST, c.rating_count DESC, c.id"
    ),
}


@dataclass(frozen=True)
class QueueSignal:
    """What the latest reward model says of one clip, for the model-ordered queues."""

    uncertainty: float | None
    disagreement: float | None


def set_queue_signals(*, round_id: int, signals: dict[int, QueueSignal]) -> int:
    """Store the reward model's view of clips of a round (``scoring.services`` computes it);
    clips of other rounds are left alone. Returns how many clips were written."""
    in_round = Clip.objects.filter(round_id=round_id, pk__in=signals).values_list("pk", flat=True)
    clips = [
        Clip(
            pk=pk,
            model_uncertainty=signals[pk].uncertainty,
            model_disagreement=signals[pk].disagreement,
        )
        for pk in in_round
    ]
    Clip.objects.bulk_update(clips, ["model_uncertainty", "model_disagreement"], batch_size=1000)
    return len(clips)


# Open clips of the round for this annotator: ready, not excluded, not rated, skipped or leased
# by them. Gold clips form their own pool, served regardless of how many ratings they have; the
# normal pool needs a free slot (current ratings plus active leases below the target).
_OPEN_CLIPS = """
    FROM annotation_clip c
   WHERE c.round_id = %(round)s AND c.status = 'ready' AND NOT (c.id = ANY(%(exclude)s::bigint[]))
     AND {unseen}
     AND {pool}
"""
_NORMAL_POOL = """
    NOT EXISTS (SELECT 1 FROM annotation_goldreference g WHERE g.clip_id = c.id)
    AND c.rating_count < c.target_ratings
    AND c.rating_count + (SELECT count(*) FILTER (WHERE l.expires_at > %(now)s)
                            FROM annotation_lease l WHERE l.clip_id = c.id) < c.target_ratings
"""
# (Active leases are counted with FILTER, not in WHERE: the lease table churns, and a condition
# on ``expires_at`` tempts the planner into scanning the (annotator, expires_at) index whole.)
_GOLD_POOL = "EXISTS (SELECT 1 FROM annotation_goldreference g WHERE g.clip_id = c.id)"
# The annotator's expired leases in the round, dropped on the way (their clips are offered to
# them again from the next request on).
_CLEAR_EXPIRED = """
    expired AS (
        DELETE FROM annotation_lease l USING annotation_clip c
         WHERE l.clip_id = c.id AND c.round_id = %(round)s
           AND l.annotator_id = %(me)s AND l.expires_at <= %(now)s
    ),
"""
# ``lease_queue``'s take: lock a batch in queue order, lease the first with room (counted by
# ``annotation_clip_slots_taken`` once locked; gold clips need no room), return the locked ids
# and the lease with its clip's payload. A lease of this annotator's that appeared since the
# snapshot (a second tab) makes the insert a no-op rather than an error.
_TAKE_SQL = """
    WITH {clear_expired}
    candidates AS MATERIALIZED (
        SELECT c.id, c.rating_count, c.target_ratings, c.model_uncertainty, c.model_disagreement
        {open_clips}
         ORDER BY {order}
         LIMIT %(limit)s
           FOR UPDATE OF c SKIP LOCKED
    ), pick AS (
        SELECT c.id FROM candidates c
         WHERE %(gold)s
            OR c.rating_count + annotation_clip_slots_taken(c.id, %(now)s) < c.target_ratings
         ORDER BY {order}
         LIMIT 1
    ), l AS (
        INSERT INTO annotation_lease (clip_id, annotator_id, created_at, expires_at)
        SELECT id, %(me)s, %(now)s, %(expires_at)s FROM pick
            ON CONFLICT (clip_id, annotator_id) DO NOTHING
        RETURNING id, clip_id, created_at, expires_at
    )
    SELECT ARRAY(SELECT id FROM candidates), {lease_columns}
      FROM (SELECT 1) one LEFT JOIN (l {lease_joins}) ON true
"""


@dataclass
class _ClipQueue:
    """The lease queue's statements for one annotator in one round (``lease_queue.claim_next``)."""

    round_id: int
    annotator_id: int
    queue_order: str
    now: object
    expires_at: object
    clear_expired: bool

    def _params(self, **extra) -> dict:
        return {"round": self.round_id, "me": self.annotator_id, "now": self.now, **extra}

    def take(self, exclude: list[int], *, gold: bool = False) -> tuple[list[int], Lease | None]:
        sql = _TAKE_SQL.format(
            clear_expired=_CLEAR_EXPIRED if self.clear_expired else "",
            open_clips=_OPEN_CLIPS.format(
                unseen=_UNSEEN, pool=_GOLD_POOL if gold else _NORMAL_POOL
            ),
            order="c.id" if gold else QUEUE_ORDERS[self.queue_order],
            lease_columns=_LEASE_COLUMNS,
            lease_joins=_LEASE_JOINS,
        )
        self.clear_expired = False
        params = self._params(
            exclude=exclude,
            gold=gold,
            limit=1 if gold else CANDIDATE_BATCH,
            expires_at=self.expires_at,
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            locked, *lease_row = cursor.fetchone()
        if lease_row[0] is None:
            return locked, None
        return locked, _lease_from_row(lease_row, annotator_id=self.annotator_id)

    def any_open(self, exclude: list[int]) -> bool:
        where = _OPEN_CLIPS.format(unseen=_UNSEEN, pool=_NORMAL_POOL)
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT EXISTS (SELECT 1 {where})", self._params(exclude=exclude))
            return cursor.fetchone()[0]


def active_lease_count(clip_id: int, *, now, exclude_annotator_id: int | None = None) -> int:
    leases = Lease.objects.filter(clip_id=clip_id, expires_at__gt=now)
    if exclude_annotator_id is not None:
        leases = leases.exclude(annotator_id=exclude_annotator_id)
    return leases.count()
