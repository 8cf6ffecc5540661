"""Roles are Django groups: annotator, lead, admin. Superusers hold every role."""

import functools

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.shortcuts import render
from rest_framework.permissions import BasePermission

ANNOTATOR, LEAD, ADMIN = "annotator", "lead", "admin"
ROLES = (ANNOTATOR, LEAD, ADMIN)


def user_roles(user: AbstractBaseUser | AnonymousUser) -> set[str]:
    if not user.is_authenticated:
        return set()
    if user.is_superuser:
        return set(ROLES)
    cached = getattr(user, "_labelhub_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        # Admins can do what leads do; leads can do what annotators do.
        if ADMIN in cached:
            cached.add(LEAD)
        user._labelhub_roles = cached
    return cached


def has_role(user, role: str) -> bool:
    return role in user_roles(user)


def role_required(role: str):
    """View decorator: logged in (else the login page) and holding ``role`` (else a 403 page that
    names the role)."""

    def decorator(view):
        @login_required
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if not has_role(request.user, role):
                message = f"You need the {role} role."
                return render(request, "403.html", {"message": message}, status=403)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


class _RolePermission(BasePermission):
    role = ""
    message = "You need the {role} role."

    def has_permission(self, request, view) -> bool:
        allowed = has_role(request.user, self.role)
        if not allowed:
            self.message = f"You need the {self.role} role."
        return allowed


class IsAnnotator(_RolePermission):
    role = ANNOTATOR


class IsLead(_RolePermission):
    role = LEAD


class IsAdmin(_RolePermission):
    role = ADMIN
