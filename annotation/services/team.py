"""Leads manage their team without Django admin: create annotators (with a one-time link to set
a password), deactivate and reactivate, change roles, and restrict a round to chosen annotators.
"""

from __future__ import annotations

import re

from django.contrib.auth.models import Group, User
from django.contrib.auth.tokens import default_token_generator
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from annotation.models import Round
from labelhub.errors import ServiceError
from labelhub.roles import ADMIN, ROLES

USERNAME = re.compile(r"^[\w.@+-]{1,150}$")


class TeamError(ServiceError):
    """A team change that cannot be made; the message says why."""


def set_password_path(user: User) -> str:
    """The one-time link (path) where ``user`` sets a password; it stops working once used."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return reverse("set_password", kwargs={"uidb64": uid, "token": token})


def create_member(*, username: str, email: str = "", roles: tuple[str, ...], by: User) -> User:
    """A new active user with no usable password and the given roles; send them
    ``set_password_path(user)``. Only admins may hand out the admin role."""
    username = (username or "").strip()
    if not USERNAME.match(username):
        raise TeamError("username: 1-150 letters, digits and @ . + - _")
    if User.objects.filter(username__iexact=username).exists():
        raise TeamError(f"a user named {username!r} already exists", code="conflict")
    roles = _checked_roles(roles, by=by)
    with transaction.atomic():
        user = User(username=username, email=(email or "").strip())
        user.set_unusable_password()
        user.save()
        user.groups.set(_groups(roles))
    return user


def set_roles(*, user_id: int, roles: tuple[str, ...], by: User) -> User:
    user = _member(user_id)
    roles = _checked_roles(roles, by=by)
    if user.pk == by.pk and not set(roles) & {"lead", ADMIN}:
        raise TeamError("you cannot take your own lead role away")
    current = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
    if ADMIN in current and not by.groups.filter(name=ADMIN).exists() and not by.is_superuser:
        raise TeamError("only an admin can change an admin's roles")
    user.groups.remove(*Group.objects.filter(name__in=ROLES))
    user.groups.add(*_groups(roles))
    return user


def set_active(*, user_id: int, active: bool, by: User) -> User:
    """Deactivate (they can no longer log in; their ratings stay) or reactivate a member."""
    user = _member(user_id)
    if user.pk == by.pk and not active:
        raise TeamError("you cannot deactivate yourself")
    if user.is_superuser and not by.is_superuser:
        raise TeamError("only a superuser can deactivate a superuser")
    user.is_active = active
    user.save(update_fields=["is_active"])
    return user


def restrict_round(*, round_id: int, user_ids: list[int]) -> Round:
    """Only these annotators get clips of the round; an empty list opens it to every annotator."""
    round_ = Round.objects.filter(pk=round_id).first()
    if round_ is None:
        raise TeamError(f"round {round_id} does not exist", code="not_found")
    users = list(User.objects.filter(pk__in=user_ids, is_active=True))
    missing = set(user_ids) - {u.pk for u in users}
    if missing:
        raise TeamError(f"no active user with id {', '.join(map(str, sorted(missing)))}")
    round_.annotators.set(users)
    return round_


def _member(user_id: int) -> User:
    user = User.objects.filter(pk=user_id).first()
    if user is None:
        raise TeamError(f"user {user_id} does not exist", code="not_found")
    return user


def _checked_roles(roles, *, by: User) -> tuple[str, ...]:
    roles = tuple(dict.fromkeys(roles))
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise TeamError(f"unknown role(s): {', '.join(unknown)}; roles are {', '.join(ROLES)}")
    if not roles:
        raise TeamError("choose at least one role")
    if ADMIN in roles and not (by.is_superuser or by.groups.filter(name=ADMIN).exists()):
        raise TeamError("only an admin can make someone an admin")
    return roles


def _groups(roles) -> list[Group]:
    return [Group.objects.get_or_create(name=role)[0] for role in roles]
