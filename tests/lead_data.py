"""Small data builders for the leads' tool tests (rounds, conditions, clips, ratings, labels)."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from datetime import timedelta

from django.utils import timezone

from annotation.models import Clip, ClipLabel, Condition, Lease, Rating, Round
from annotation.services.ratings import submit_rating
from labelhub.dimensions import DIMENSION_KEYS
from tests.conftest import store_file

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


def rate(
    clip: Clip | int, annotator, scores: int | list[int] = 3, *, seconds: float = 10.0, **overrides
) -> Rating:
    """Rate a clip the way an annotator does, through the services: hold a lease on it, then
    submit six scores (one int for all six, or a list in DIMENSION_KEYS order; ``overrides`` set
    single dimensions by key). The label, counts and adaptive overlap follow as in production."""
    clip_id = clip if isinstance(clip, int) else clip.pk
    values = [scores] * len(DIMENSION_KEYS) if isinstance(scores, int) else list(scores)
    chosen = {**dict(zip(DIMENSION_KEYS, values, strict=True)), **overrides}
    Lease.objects.get_or_create(  # a lease they hold already, expired or not, stays as it is
        clip_id=clip_id,
        annotator=annotator,
        defaults={"expires_at": timezone.now() + timedelta(minutes=5)},
    )
    return submit_rating(
        clip_id=clip_id,
        annotator=annotator,
        scores=chosen,
        seconds_spent=seconds,
        idempotency_key=uuid.uuid4(),
    ).rating


def link_character(condition: Condition, character) -> None:
    """Link a condition to a gallery character (ingest does it for a manifest's ``character``)."""
    Condition.objects.filter(pk=condition.pk).update(character=character)


def synthetic_condition(synthetic, *, key: str, **fields) -> Condition:
    """A condition from a synthetic clip (``scoring.anime_reward.synthetic``): its first frame
    stored as the image, its prompt made unique by ``key``; ``fields`` set the rest (character)."""
    return Condition.objects.create(
        content_hash=sha("cond" + key),
        image=store_file(synthetic.condition_image_path, f"conditions/c{key}.png"),
        image_sha256=sha("image" + key),
        prompt=f"{synthetic.prompt} (take {key})",
        prompt_sha256=sha("p" + key),
        **fields,
    )


def labelled_clip(
    round_: Round, condition: Condition, synthetic, *, key: str, source_name: str = "toy"
) -> Clip:
    """A ready clip of a synthetic video whose label is the clip's rule labels, as if three
    annotators had agreed on them (std 0)."""
    video = store_file(synthetic.video_path, f"clips/v{key}.mp4")
    clip = Clip.objects.create(
        round=round_,
        condition=condition,
        source_kind="external",
        source_name=source_name,
        original=video,
        original_sha256=sha("orig" + key),
        video=video,
        status=Clip.Status.READY,
        target_ratings=3,
        rating_count=3,
    )
    ClipLabel.objects.create(
        clip=clip,
        count=3,
        overall=sum(synthetic.labels.values()) / len(DIMENSION_KEYS),
        **{f"{k}_mean": v for k, v in synthetic.labels.items()},
        **dict.fromkeys((f"{k}_std" for k in DIMENSION_KEYS), 0.0),
    )
    return clip


def make_labelled_round(name: str, synthetic_clips) -> Round:
    """A round of one labelled clip per condition, one per synthetic clip (ready to export)."""
    round_ = make_round(name)
    for synthetic in synthetic_clips:
        key = f"{name}-{synthetic.index}"
        condition = synthetic_condition(synthetic, key=key)
        labelled_clip(round_, condition, synthetic, key=key)
    return round_
