"""The team page for leads: members, roles, activity, new annotators with a one-time
set-password link, and which annotators a round is restricted to. Thin: services do the work."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from annotation.models import Round
from annotation.selectors.team import team_members
from annotation.services import team
from labelhub.pages import show_error
from labelhub.roles import LEAD, ROLES, role_required

lead_required = role_required(LEAD)


@lead_required
def team_page(request):
    rounds = list(Round.objects.prefetch_related("annotators").order_by("-created_at", "-id"))
    chosen = request.GET.get("round", "")
    selected = next((r for r in rounds if str(r.pk) == chosen), rounds[0] if rounds else None)
    return render(
        request,
        "lead/team.html",
        {
            "members": team_members(),
            "roles": ROLES,
            "rounds": rounds,
            "selected_round": selected,
            "restricted_ids": {u.pk for u in selected.annotators.all()} if selected else set(),
            "new_link": request.session.pop("team_new_link", None),
        },
    )


@lead_required
@require_POST
def team_create(request):
    try:
        user = team.create_member(
            username=request.POST.get("username", ""),
            email=request.POST.get("email", ""),
            roles=tuple(request.POST.getlist("roles")) or ("annotator",),
            by=request.user,
        )
    except team.TeamError as error:
        show_error(request, error, doing="Not created")
        return redirect("annotation:lead_team")
    link = request.build_absolute_uri(team.set_password_path(user))
    request.session["team_new_link"] = {"username": user.username, "link": link}
    messages.success(request, f"Created {user.username}. Send them the one-time link below.")
    return redirect("annotation:lead_team")


@lead_required
@require_POST
def team_member_update(request, user_id: int):
    action = request.POST.get("action")
    try:
        if action == "roles":
            user = team.set_roles(
                user_id=user_id, roles=tuple(request.POST.getlist("roles")), by=request.user
            )
            messages.success(request, f"Roles of {user.username} saved.")
        elif action in ("deactivate", "activate"):
            user = team.set_active(user_id=user_id, active=action == "activate", by=request.user)
            messages.success(request, f"{user.username} {action}d.")
        elif action == "link":
            user = team.set_active(user_id=user_id, active=True, by=request.user)
            link = request.build_absolute_uri(team.set_password_path(user))
            request.session["team_new_link"] = {"username": user.username, "link": link}
            messages.success(request, f"A new one-time link for {user.username} is below.")
        else:
            messages.error(request, f"Unknown action {action!r}.")
    except team.TeamError as error:
        show_error(request, error, doing="Not changed")
    return redirect("annotation:lead_team")


@lead_required
@require_POST
def round_team_update(request, round_id: int):
    round_ = get_object_or_404(Round, pk=round_id)
    try:
        ids = [int(v) for v in request.POST.getlist("annotators")]
        team.restrict_round(round_id=round_.pk, user_ids=ids)
    except ValueError:
        messages.error(request, "Not changed: annotators are named by their ids")
    except team.TeamError as error:
        show_error(request, error, doing="Not changed")
    else:
        messages.success(
            request,
            f"{round_.name} is now open to {len(ids)} chosen annotator(s)."
            if ids
            else f"{round_.name} is open to every annotator.",
        )
    return redirect(f"/lead/team/?round={round_.pk}")
