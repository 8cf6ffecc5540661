"""Per-round guidelines: the leads' Markdown text, example clips per dimension and score, and
when each annotator last read them.

Markdown is rendered with raw HTML turned off (markdown-it-py's CommonMark preset with
``html=False``): whatever a lead types, ``<script>`` and friends reach the page as text, and
links with ``javascript:``/``data:`` targets are not made into links.
"""

from __future__ import annotations

import functools

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from annotation.models import (
    Clip,
    GuidelineExample,
    GuidelinesSeen,
    Rating,
    Round,
    RoundGuidelines,
)
from labelhub.dimensions import DIMENSION_KEYS, SCORE_MAX, SCORE_MIN
from labelhub.errors import ServiceError

MAX_GUIDELINES_CHARS = 50_000


class GuidelineError(ServiceError):
    """A guideline edit that cannot be saved; the message says why."""


@functools.cache
def _markdown():
    from markdown_it import MarkdownIt  # loaded by the first page that needs it, not at start-up

    return MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def render_markdown(text: str) -> str:
    """Markdown to HTML with any raw HTML escaped (safe to mark_safe in a template)."""
    return _markdown().render(text or "")


def save_guidelines(*, round_id: int, text: str, updated_by=None) -> RoundGuidelines:
    """Replace a round's guideline text (Markdown)."""
    text = (text or "").replace("\r\n", "\n")
    if len(text) > MAX_GUIDELINES_CHARS:
        raise GuidelineError(
            f"guidelines are limited to {MAX_GUIDELINES_CHARS} characters, got {len(text)}"
        )
    if not Round.objects.filter(pk=round_id).exists():
        raise GuidelineError(f"round {round_id} does not exist", code="not_found")
    guidelines, _ = RoundGuidelines.objects.update_or_create(
        round_id=round_id, defaults={"text": text, "updated_by": updated_by}
    )
    return guidelines


def add_example(
    *, round_id: int, clip_id: int, dimension: str, score: int, note: str = "", created_by=None
) -> GuidelineExample:
    """Show a rated clip of the round as an example of ``score`` on ``dimension``.

    Choosing the same clip again for the same dimension replaces its score and note.
    """
    if dimension not in DIMENSION_KEYS:
        raise GuidelineError(f"unknown dimension {dimension!r}")
    if isinstance(score, bool) or not isinstance(score, int) or not SCORE_MIN <= score <= SCORE_MAX:
        raise GuidelineError(f"score must be a whole number from {SCORE_MIN} to {SCORE_MAX}")
    clip = Clip.objects.filter(pk=clip_id).only("round_id").first()
    if clip is None:
        raise GuidelineError(f"clip {clip_id} does not exist", code="not_found")
    if clip.round_id != round_id:
        raise GuidelineError(f"clip {clip_id} is not in this round")
    if not Rating.objects.filter(clip_id=clip_id, is_current=True).exists():
        raise GuidelineError(f"clip {clip_id} has no ratings yet; examples come from rated clips")
    example, _ = GuidelineExample.objects.update_or_create(
        round_id=round_id,
        clip_id=clip_id,
        dimension=dimension,
        defaults={"score": score, "note": (note or "").strip()[:500], "created_by": created_by},
    )
    return example


def remove_example(*, round_id: int, example_id: int) -> None:
    deleted, _ = GuidelineExample.objects.filter(pk=example_id, round_id=round_id).delete()
    if not deleted:
        raise GuidelineError(f"example {example_id} does not exist in this round", code="not_found")


def guidelines_changed_at(round_id: int):
    """When the round's guidelines or examples last changed (None when it has none)."""
    text_at = (
        RoundGuidelines.objects.filter(round_id=round_id)
        .exclude(text="")
        .values_list("updated_at", flat=True)
        .first()
    )
    example_at = GuidelineExample.objects.filter(round_id=round_id).aggregate(m=Max("created_at"))[
        "m"
    ]
    stamps = [t for t in (text_at, example_at) if t is not None]
    return max(stamps) if stamps else None


def should_show_guidelines(*, round_id: int, annotator) -> bool:
    """True on an annotator's first visit to a round with guidelines, and after they change."""
    changed = guidelines_changed_at(round_id)
    if changed is None:
        return False
    seen = (
        GuidelinesSeen.objects.filter(round_id=round_id, annotator=annotator)
        .values_list("seen_at", flat=True)
        .first()
    )
    return seen is None or seen < changed


def mark_guidelines_seen(*, round_id: int, annotator) -> GuidelinesSeen:
    with transaction.atomic():
        seen, _ = GuidelinesSeen.objects.update_or_create(
            round_id=round_id, annotator=annotator, defaults={"seen_at": timezone.now()}
        )
    return seen
