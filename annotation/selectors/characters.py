"""Reads of the character gallery: the leads' page and the reference images reward training uses."""

from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet

from annotation.models import Character, CharacterImage


def list_characters() -> QuerySet[Character]:
    """Every character with its reference images and how many conditions show it (2 queries)."""
    return Character.objects.annotate(
        condition_count=Count("conditions", distinct=True)
    ).prefetch_related(Prefetch("images", queryset=CharacterImage.objects.order_by("id")))


def gallery_image_names(character_ids) -> dict[int, list[str]]:
    """Character id -> storage names of its reference images (oldest first); characters without
    images are left out."""
    gallery: dict[int, list[str]] = {}
    rows = (
        CharacterImage.objects.filter(character_id__in=set(character_ids))
        .order_by("character_id", "id")
        .values_list("character_id", "image")
    )
    for character_id, name in rows:
        gallery.setdefault(character_id, []).append(name)
    return gallery
