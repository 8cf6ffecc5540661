"""Reads for the annotator page, the API and media access."""

from __future__ import annotations

from django.core.cache import cache
from django.db import connection
from django.db.models import Q
from django.urls import reverse

from annotation.models import (
    AuditEntry,
    Clip,
    GuidelineExample,
    Lease,
    PairwiseTask,
    Rating,
    Round,
    Skip,
)
from labelhub.roles import ANNOTATOR, LEAD, user_roles

MEDIA_KINDS = ("video", "poster", "original", "condition", "character")


def media_url(clip_id: int, kind: str) -> str:
    return reverse("annotation:clip_media", args=[clip_id, kind])


def can_view_clip(user, clip_id: int) -> bool:
    """Leads and admins see every clip; an annotator only a clip the assignment service gave them
    (a lease they hold until their next lease request clears it, or a rating of theirs), a clip of
    a pairwise task they hold or judged, and the example clips of guidelines. A skip or a flag
    grants nothing: both need the lease already."""
    roles = user_roles(user)
    if LEAD in roles:
        return True
    if ANNOTATOR not in roles:
        return False
    return (
        Lease.objects.filter(clip_id=clip_id, annotator=user).exists()
        or Rating.objects.filter(clip_id=clip_id, annotator=user).exists()
        or GuidelineExample.objects.filter(clip_id=clip_id).exists()
        or PairwiseTask.objects.filter(Q(clip_a_id=clip_id) | Q(clip_b_id=clip_id))
        .filter(Q(leases__judge=user) | Q(judgements__judge=user))
        .exists()
    )


def clip_file_name(clip: Clip, kind: str) -> str:
    """Storage name of one of a clip's files ("" when it has none)."""
    if kind == "video":
        return clip.video.name
    if kind == "poster":
        return clip.poster.name
    if kind == "original":
        return clip.original.name
    if kind == "condition":
        return clip.condition.image.name
    if kind == "character":
        return clip.condition.character_reference.name or ""
    raise ValueError(f"unknown media kind {kind!r}")


def annotator_clip_payload(clip: Clip) -> dict:
    """What an annotator sees of a clip: media and condition, never its source or others' ratings."""
    return {
        "id": clip.pk,
        "video_url": media_url(clip.pk, "video"),
        "poster_url": media_url(clip.pk, "poster"),
        "condition_image_url": media_url(clip.pk, "condition"),
        "character_reference_url": media_url(clip.pk, "character")
        if clip.condition.character_reference
        else None,
        "prompt": clip.condition.prompt,
        "frames": clip.frames,
        "fps": clip.fps,
        "width": clip.width,
        "height": clip.height,
        "duration": clip.duration,
    }


def round_totals_subquery(round_id: str) -> str:
    """A round's totals over its ready clips, as a subquery whose ``round_id`` is an SQL
    expression (a parameter, or a column of the statement that joins it: next-clip and submit
    fold the totals into a statement they make anyway)."""
    return f"""
        SELECT coalesce(sum(c.rating_count), 0) AS done,
               coalesce(sum(c.target_ratings), 0) AS target,
               count(*) FILTER (WHERE c.rating_count < c.target_ratings) AS clips_left
          FROM annotation_clip c
         WHERE c.round_id = {round_id} AND c.status = 'ready'
    """


_ROUND_TOTALS_SQL = f"""
    SELECT r.name, t.done, t.target, t.clips_left
      FROM annotation_round r CROSS JOIN ({round_totals_subquery("%(round)s")}) t
     WHERE r.id = %(round)s
"""
_MY_RATINGS_SQL = """
    SELECT count(*) FROM annotation_rating rt JOIN annotation_clip rc ON rc.id = rt.clip_id
     WHERE rc.round_id = %s AND rt.annotator_id = %s AND rt.is_current
"""
# Round-wide totals scan the round's clips; on every next/submit of every annotator that would
# grow with the round, so they are shared for a few seconds (the annotator's own count is exact).
ROUND_TOTALS_SECONDS = 5


def _totals_key(round_id: int) -> str:
    return f"labelhub:round-totals:{round_id}"


def cached_round_totals(round_id: int) -> dict | None:
    """The round's recent totals, or None when they must be counted again."""
    return cache.get(_totals_key(round_id))


def remember_round_totals(round_id: int, *, name: str, done: int, target: int, left: int) -> dict:
    """Store totals counted by a query (this one's or a caller's that joined the subquery)."""
    totals = {
        "round": name,
        "round_ratings_done": done,
        "round_ratings_target": target,
        "clips_left": left,
    }
    cache.set(_totals_key(round_id), totals, ROUND_TOTALS_SECONDS)
    return totals


def round_totals(round_id: int) -> dict:
    totals = cached_round_totals(round_id)
    if totals is None:
        with connection.cursor() as cursor:
            cursor.execute(_ROUND_TOTALS_SQL, {"round": round_id})
            name, done, target, left = cursor.fetchone()
        totals = remember_round_totals(round_id, name=name, done=done, target=target, left=left)
    return totals


def annotator_progress(
    *, round_id: int, annotator, rated_by_me: int | None = None, totals: dict | None = None
) -> dict:
    """The annotator's own count of ratings in the round (exact) and the round's totals (recent).

    ``rated_by_me`` and ``totals`` are given when the caller already has them (next-clip and
    submit count them in statements they make anyway)."""
    if rated_by_me is None:
        with connection.cursor() as cursor:
            cursor.execute(_MY_RATINGS_SQL, [round_id, annotator.pk])
            (rated_by_me,) = cursor.fetchone()
    return {"rated_by_me": rated_by_me, **(totals or round_totals(round_id))}


def open_rounds_for(user) -> list[dict]:
    rounds = Round.objects.filter(status=Round.Status.OPEN).order_by("-created_at")
    out = []
    for round_ in rounds:
        progress = annotator_progress(round_id=round_.pk, annotator=user)
        out.append({"id": round_.pk, "name": round_.name, **progress})
    return out


def pulled_clips(*, round_id: int) -> list[dict]:
    """The round's pulled clips for the lead dashboard: each with its flags, reasons and pull time."""
    clips = list(
        Clip.objects.filter(round_id=round_id, status=Clip.Status.PULLED)
        .select_related("condition")
        .order_by("pk")
    )
    flags: dict[int, list[dict]] = {clip.pk: [] for clip in clips}
    for skip in (
        Skip.objects.filter(clip_id__in=flags, broken=True)
        .select_related("annotator")
        .order_by("created_at", "pk")
    ):
        flags[skip.clip_id].append(
            {
                "annotator": skip.annotator.get_username(),
                "reason": skip.reason,
                "at": skip.created_at,
            }
        )
    pulled_at: dict[int, object] = {}
    for clip_id, created_at in AuditEntry.objects.filter(
        clip_id__in=flags, action=AuditEntry.Action.PULL_CLIP
    ).values_list("clip_id", "created_at"):
        pulled_at[clip_id] = max(created_at, pulled_at.get(clip_id, created_at))
    return [
        {
            "clip_id": clip.pk,
            "source": clip.source_name,
            "prompt": clip.condition.prompt,
            "rating_count": clip.rating_count,
            "target_ratings": clip.target_ratings,
            "pulled_at": pulled_at.get(clip.pk),
            "flags": flags[clip.pk],
        }
        for clip in clips
    ]
