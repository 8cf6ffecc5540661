"""The judge's page for pairwise tasks (annotators and up); the work happens through the API."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponseForbidden
from django.shortcuts import render

from labelhub.dimensions import DIMENSIONS
from labelhub.roles import ANNOTATOR, has_role


@login_required
def judge_page(request):
    if not has_role(request.user, ANNOTATOR) and not request.user.is_superuser:
        return HttpResponseForbidden("You need the annotator role.")
    return render(request, "pairwise/judge.html", {"dimensions": DIMENSIONS})
