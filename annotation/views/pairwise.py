"""The judge's page for pairwise tasks (annotators and up); the work happens through the API."""

from django.shortcuts import render

from labelhub.dimensions import DIMENSIONS
from labelhub.roles import ANNOTATOR, role_required


@role_required(ANNOTATOR)
def judge_page(request):
    return render(request, "pairwise/judge.html", {"dimensions": DIMENSIONS})
