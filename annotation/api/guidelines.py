"""The annotator closed a round's guidelines: they stop opening by themselves until they change."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Round
from annotation.services.guidelines import mark_guidelines_seen
from labelhub.roles import IsAnnotator
from labelhub.schema_docs import extend_schema


class GuidelinesSeenView(APIView):
    permission_classes = [IsAuthenticated, IsAnnotator]

    @extend_schema(request=None, responses={200: OpenApiResponse(description="seen_at")})
    def post(self, request, round_id: int):
        if not Round.objects.filter(pk=round_id).exists():
            return Response({"detail": f"round {round_id} does not exist"}, status=404)
        seen = mark_guidelines_seen(round_id=round_id, annotator=request.user)
        return Response({"round_id": round_id, "seen_at": seen.seen_at})
