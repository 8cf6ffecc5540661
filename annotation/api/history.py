"""The annotator's own history: recent ratings, reopening one, and correcting it.

A correction never edits a rating: ``correct_rating`` writes a new row that supersedes it.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.api.annotate import SixScores
from annotation.selectors.me import rating_for_revision, recent_ratings
from annotation.services.ratings import correct_rating
from labelhub.dimensions import DIMENSION_KEYS
from labelhub.roles import IsAnnotator
from labelhub.schema_docs import extend_schema


class HistoryQuery(serializers.Serializer):
    round = serializers.IntegerField(required=False, min_value=1)
    limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=50)


class MyRatingsView(APIView):
    """The logged-in annotator's recent current ratings, newest first, with thumbnails."""

    permission_classes = [IsAuthenticated, IsAnnotator]

    @extend_schema(
        operation_id="me_ratings_list",
        parameters=[OpenApiParameter("round", int), OpenApiParameter("limit", int)],
        responses={200: OpenApiResponse(description="recent ratings")},
    )
    def get(self, request):
        params = HistoryQuery(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(
            {
                "undo_window_seconds": settings.LABELHUB_UNDO_WINDOW_SECONDS,
                "ratings": recent_ratings(
                    annotator=request.user,
                    round_id=params.validated_data.get("round"),
                    limit=params.validated_data["limit"],
                ),
            }
        )


class CorrectionRequest(SixScores):
    pass


class MyRatingView(APIView):
    """GET: one of your current ratings with its clip, to reopen it.
    POST: correct it with six new scores (a new rating that supersedes it)."""

    permission_classes = [IsAuthenticated, IsAnnotator]

    @extend_schema(responses={200: OpenApiResponse(description="rating + clip")})
    def get(self, request, rating_id: int):
        found = rating_for_revision(annotator=request.user, rating_id=rating_id)
        if found is None:
            return Response(
                {"detail": "no such current rating of yours (it may have been corrected)"},
                status=404,
            )
        return Response(found)

    @extend_schema(
        request=CorrectionRequest, responses={201: OpenApiResponse(description="corrected")}
    )
    def post(self, request, rating_id: int):
        if not isinstance(request.data, dict):
            return Response({"detail": "send an object with the six scores"}, status=400)
        unknown = sorted(set(request.data) - {*DIMENSION_KEYS, "seconds_spent"})
        if unknown:
            return Response({"detail": f"unknown field(s): {', '.join(unknown)}"}, status=400)
        params = CorrectionRequest(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        new = correct_rating(
            rating_id=rating_id,
            annotator=request.user,
            scores={key: data[key] for key in DIMENSION_KEYS},
            seconds_spent=data["seconds_spent"],
        )
        return Response(
            {
                "rating_id": new.pk,
                "supersedes": rating_id,
                "clip_id": new.clip_id,
                "scores": new.scores(),
            },
            status=status.HTTP_201_CREATED,
        )
