"""The judge's page for pairwise tasks (annotators and up); the work happens through the API."""

from django.shortcuts import render

from labelhub.dimensions import DIMENSIONS
from labelhub.roles import ANNOTATOR, role_required


@role_required(ANNOTATOR)
def judge_page(request):
    # The overall choice first, then the six dimensions: every row is chosen the same way.
    overall = {"key": "overall", "name": "Overall", "question": "Which clip is better overall?"}
    rows = [overall, *({"key": d.key, "name": d.name, "question": d.question} for d in DIMENSIONS)]
    return render(request, "pairwise/judge.html", {"rows": rows})
