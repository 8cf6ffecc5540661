"""Which clip an annotator rates next.

Each clip needs ``Clip.target_ratings`` current ratings, never two from one annotator. An
annotator holds a clip through a Lease that expires (the round's ``lease_minutes``); an expired
lease frees its slot. The choice runs in Postgres with ``SELECT ... FOR UPDATE SKIP LOCKED`` so
concurrent annotators never wait on or take the same slot: every lease and every rating of a clip
is created while holding that clip's row lock, and the slot count is re-checked under the lock.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.db import transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Clip, Lease, Rating, Round, Skip
from annotation.services.gold import is_gold_clip_filter, lease_gold_clip_if_due

# The clip on screen plus the next one, already fetched so it plays without a wait.
MAX_ACTIVE_LEASES_PER_ROUND = 2
# Rows looked at per attempt; a candidate can turn out full once its lock is held.
CANDIDATE_BATCH = 8
# When every open clip is locked by someone else's in-flight transaction, wait briefly and retry.
BUSY_RETRIES = 200
BUSY_RETRY_SECONDS = 0.01


class AssignmentError(Exception):
    """The round cannot hand out clips to this annotator; ``http_status`` says why in HTTP
    terms: 404 unknown round, 409 closed, 403 restricted to a team the annotator is not in."""

    def __init__(self, message: str, http_status: int = 404):
        super().__init__(message)
        self.http_status = http_status


def active_lease_count(clip_id: int, *, now, exclude_annotator_id: int | None = None) -> int:
    leases = Lease.objects.filter(clip_id=clip_id, expires_at__gt=now)
    if exclude_annotator_id is not None:
        leases = leases.exclude(annotator_id=exclude_annotator_id)
    return leases.count()


def lease_next_clip(
    *, round_id: int, annotator, exclude: list[int] | tuple = (), now=None
) -> Lease | None:
    """Return the annotator's lease on their next clip in the round, or None when none is left.

    An active lease the annotator already holds is returned first (a reload shows the same clip);
    ``exclude`` lists clips the client already shows, to fetch the one after.
    """
    now = now or timezone.now()
    members = Round.annotators.through.objects.filter(round_id=OuterRef("pk"))
    round_ = (
        Round.objects.filter(pk=round_id)
        .annotate(
            restricted=Exists(members),
            member=Exists(members.filter(user_id=annotator.pk)),
        )
        .first()
    )
    if round_ is None:
        raise AssignmentError(f"round {round_id} does not exist")
    if round_.status != Round.Status.OPEN:
        raise AssignmentError(f"round '{round_.name}' is closed", 409)
    if round_.restricted and not round_.member:
        raise AssignmentError(f"round '{round_.name}' is open to a chosen team only", 403)
    exclude = [int(c) for c in exclude]

    # One query for every lease the annotator has in the round: active ones are shown again,
    # expired ones are dropped below (only when there are some).
    leases = list(
        Lease.objects.filter(annotator=annotator, clip__round_id=round_id)
        .select_related("clip", "clip__condition")
        .order_by("created_at", "pk")
    )
    held = [
        lease
        for lease in leases
        if lease.expires_at > now and lease.clip.status == Clip.Status.READY
    ]
    for lease in held:
        if lease.clip_id not in exclude:
            return lease
    if len(held) >= MAX_ACTIVE_LEASES_PER_ROUND:
        return None
    expired = [lease.pk for lease in leases if lease.expires_at <= now]

    expires_at = now + timedelta(minutes=round_.lease_minutes)
    with transaction.atomic():
        if expired:
            Lease.objects.filter(pk__in=expired, expires_at__lte=now).delete()
        # Gold clips come from their own pool at the round's rate.
        gold_lease = lease_gold_clip_if_due(
            round_=round_, annotator=annotator, exclude=exclude, now=now, expires_at=expires_at
        )
        if gold_lease is not None:
            return gold_lease
        busy_retries = 0
        while True:
            candidates = list(
                _candidates(round_=round_, annotator=annotator, exclude=exclude, now=now)
            )
            if not candidates:
                # SKIP LOCKED hides clips another transaction holds for a moment (a submit or a
                # lease in flight). Only say "nothing left" when no open clip exists even so.
                still_open = _candidates(
                    round_=round_, annotator=annotator, exclude=exclude, now=now, lock=False
                ).exists()
                if not still_open or busy_retries >= BUSY_RETRIES:
                    return None
                busy_retries += 1
                time.sleep(BUSY_RETRY_SECONDS)
                continue
            for clip in candidates:
                # Under the row lock the count is exact: leases and ratings of a clip are only
                # created while holding it.
                if clip.rating_count + active_lease_count(clip.pk, now=now) < clip.target_ratings:
                    lease = Lease.objects.create(
                        clip=clip, annotator=annotator, expires_at=expires_at
                    )
                    lease.clip = clip
                    return lease
                exclude.append(clip.pk)


# The round's queue order: closest to completion (fills clips up, the default), or what the
# latest reward model is least sure of / disagrees with humans on most (scoring writes both).
QUEUE_ORDERS = {
    Round.QueueOrder.COMPLETION: ("-rating_count", "pk"),
    Round.QueueOrder.UNCERTAINTY: (
        F("model_uncertainty").desc(nulls_last=True),
        "-rating_count",
        "pk",
    ),
    Round.QueueOrder.DISAGREEMENT: (
        F("model_disagreement").desc(nulls_last=True),
        "-rating_count",
        "pk",
    ),
}


def _candidates(*, round_: Round, annotator, exclude: list[int], now, lock: bool = True):
    active_leases = (
        Lease.objects.filter(clip_id=OuterRef("pk"), expires_at__gt=now)
        .order_by()
        .values("clip_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    mine = Q(Exists(Rating.objects.filter(clip_id=OuterRef("pk"), annotator=annotator)))
    mine |= Q(Exists(Skip.objects.filter(clip_id=OuterRef("pk"), annotator=annotator)))
    mine |= Q(Exists(Lease.objects.filter(clip_id=OuterRef("pk"), annotator=annotator)))
    clips = (
        Clip.objects.filter(
            round_id=round_.pk, status=Clip.Status.READY, rating_count__lt=F("target_ratings")
        )
        .exclude(pk__in=exclude)
        .exclude(mine)
        .exclude(is_gold_clip_filter())  # served only through annotation.services.gold
        .annotate(leased=Coalesce(Subquery(active_leases, output_field=IntegerField()), Value(0)))
        .filter(rating_count__lt=F("target_ratings") - F("leased"))
        .order_by(*QUEUE_ORDERS[round_.queue_order])
    )
    if not lock:
        return clips
    return clips.select_related("condition").select_for_update(skip_locked=True, of=("self",))[
        :CANDIDATE_BATCH
    ]
