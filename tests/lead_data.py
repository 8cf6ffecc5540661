"""Small data builders for the leads' tool tests (rounds, conditions, clips, ratings, labels)."""

from __future__ import annotations

import hashlib
import itertools

from django.db.models import F

from annotation.models import Clip, Condition, Rating, Round
from annotation.services.labels import update_label
from labelhub.dimensions import DIMENSION_KEYS

_counter = itertools.count(1)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_round(name: str = "r1", **fields) -> Round:
    return Round.objects.create(name=name, **fields)


def make_condition(image: str, prompt: str, *, character_reference: str = "") -> Condition:
    return Condition.objects.create(
        content_hash=sha(f"{image}|{prompt}|{character_reference}"),
        image=f"conditions/{image}.png",
        image_sha256=sha("image:" + image),
        prompt=prompt,
        prompt_sha256=sha("prompt:" + prompt),
        character_reference=character_reference,
    )


def make_clip(
    round_: Round,
    condition: Condition,
    source_name: str = "ground_truth",
    *,
    source_kind: str | None = None,
    status: str = "ready",
    target_ratings: int | None = None,
) -> Clip:
    n = next(_counter)
    kind = source_kind or ("ground_truth" if source_name == "ground_truth" else "external")
    return Clip.objects.create(
        round=round_,
        condition=condition,
        source_kind=kind,
        source_name=source_name,
        original=f"originals/clip{n}.mp4",
        original_sha256=sha(f"original{n}"),
        video=f"clips/clip{n}.mp4",
        poster=f"posters/clip{n}.jpg",
        status=status,
        target_ratings=target_ratings or round_.ratings_per_clip,
    )


def rate(clip: Clip, annotator, scores, *, seconds: float = 10.0) -> Rating:
    """Store one current rating (six scores: a list in DIMENSION_KEYS order or one int) and relabel."""
    values = [scores] * len(DIMENSION_KEYS) if isinstance(scores, int) else list(scores)
    rating = Rating.objects.create(
        clip=clip,
        annotator=annotator,
        seconds_spent=seconds,
        **dict(zip(DIMENSION_KEYS, values, strict=True)),
    )
    Clip.objects.filter(pk=clip.pk).update(rating_count=F("rating_count") + 1)
    update_label(clip.pk)
    return rating
