"""The team page's read: every member with roles, activity and how much they rated."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Count, Max, Q

from labelhub.roles import ROLES


def team_members() -> list[dict]:
    users = (
        User.objects.annotate(
            rating_total=Count("ratings", filter=Q(ratings__is_current=True), distinct=True),
            last_rating=Max("ratings__created_at"),
        )
        .prefetch_related("groups")
        .order_by("-is_active", "username")
    )
    return [
        {
            "user": user,
            "roles": sorted({g.name for g in user.groups.all()} & set(ROLES)),
            "ratings": user.rating_total,
            "last_rating": user.last_rating,
        }
        for user in users
    ]
