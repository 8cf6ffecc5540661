"""DRF endpoints for the annotation flow: next clip, submit, skip, flag, imports, clip and label reads.

Thin: parse with a serializer, call one service or selector, shape the answer.
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Clip, ClipLabel, ImportBatch
from annotation.selectors.clips import annotator_clip_payload, annotator_progress, can_view_clip
from annotation.selectors.imports import batch_report
from annotation.services import ingest
from annotation.services.assignment import next_clip
from annotation.services.ratings import skip_clip, submit_rating
from labelhub.dimensions import DIMENSION_KEYS, SCORE_MAX, SCORE_MIN
from labelhub.roles import IsAnnotator, IsLead, user_roles
from labelhub.schema_docs import extend_schema

# Database ids are bigints: a larger number can name no row, and Postgres would refuse it.
MAX_ID = 2**63 - 1


def _error(message: str, code: int) -> Response:
    return Response({"detail": message}, status=code)


def _not_an_object(request) -> Response | None:
    """A 400 for a body that is not a JSON object (``null``, ``5``, ``[null]``), else None."""
    if isinstance(request.data, dict):
        return None
    return _error(f"the request body must be a JSON object, got {type(request.data).__name__}", 400)


class MeView(APIView):
    """The logged-in user and their roles (also the trivial endpoint of the load benchmark)."""

    @extend_schema(responses={200: OpenApiResponse(description="username and roles")})
    def get(self, request):
        return Response(
            {"username": request.user.get_username(), "roles": sorted(user_roles(request.user))}
        )


class NextClipRequest(serializers.Serializer):
    exclude = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=MAX_ID),
        required=False,
        default=list,
        max_length=10,
    )


class NextClipView(APIView):
    """Lease the annotator's next clip in a round (the one already held, if any); 204 when done."""

    permission_classes = [IsAuthenticated, IsAnnotator]

    @extend_schema(
        request=NextClipRequest,
        responses={200: OpenApiResponse(description="clip + lease"), 204: None},
    )
    def post(self, request, round_id: int):
        if (bad := _not_an_object(request)) is not None:
            return bad
        params = NextClipRequest(data=request.data)
        params.is_valid(raise_exception=True)
        result = next_clip(
            round_id=round_id, annotator=request.user, exclude=params.validated_data["exclude"]
        )
        if result.lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(
            {
                "clip": annotator_clip_payload(result.lease.clip),
                "lease": {"expires_at": result.lease.expires_at},
                "progress": result.progress,
            }
        )


class SixScores(serializers.Serializer):
    """The six 1-5 scores of a rating and the seconds it took (a submit or a correction)."""

    seconds_spent = serializers.FloatField(required=False, default=0.0, min_value=0)

    def get_fields(self):
        fields = super().get_fields()
        for key in DIMENSION_KEYS:
            fields[key] = serializers.IntegerField(min_value=SCORE_MIN, max_value=SCORE_MAX)
        return fields


class RatingRequest(SixScores):
    idempotency_key = serializers.UUIDField()


class SubmitRatingView(APIView):
    """Save six 1-5 scores for a clip the caller holds a lease on (403 otherwise; 409 when the
    round is closed or the clip pulled). Repeating a submit with the same idempotency_key is
    harmless."""

    permission_classes = [IsAuthenticated, IsAnnotator]

    @extend_schema(
        request=RatingRequest, responses={201: OpenApiResponse(description="saved"), 200: None}
    )
    def post(self, request, clip_id: int):
        if (bad := _not_an_object(request)) is not None:
            return bad
        unknown = sorted(set(request.data) - {*DIMENSION_KEYS, "seconds_spent", "idempotency_key"})
        if unknown:
            return _error(f"unknown field(s): {', '.join(map(str, unknown))}", 400)
        params = RatingRequest(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        result = submit_rating(
            clip_id=clip_id,
            annotator=request.user,
            scores={key: data[key] for key in DIMENSION_KEYS},
            seconds_spent=data["seconds_spent"],
            idempotency_key=data["idempotency_key"],
        )
        body = {
            "rating_id": result.rating.pk,
            "clip_id": clip_id,
            "created": result.created,
            "progress": annotator_progress(
                round_id=result.rating.clip.round_id,
                annotator=request.user,
                rated_by_me=result.rated_in_round,
                totals=result.round_totals,
            ),
        }
        return Response(
            body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        )


class ReasonRequest(serializers.Serializer):
    reason = serializers.CharField(max_length=500)


class SkipClipView(APIView):
    """Pass on a clip the caller holds, with a reason; it goes back to other annotators."""

    permission_classes = [IsAuthenticated, IsAnnotator]
    broken = False

    @extend_schema(request=ReasonRequest, responses={200: None})
    def post(self, request, clip_id: int):
        if (bad := _not_an_object(request)) is not None:
            return bad
        params = ReasonRequest(data=request.data)
        params.is_valid(raise_exception=True)
        skip_clip(
            clip_id=clip_id,
            annotator=request.user,
            reason=params.validated_data["reason"],
            broken=self.broken,
        )
        return Response({"clip_id": clip_id, "broken": self.broken})


class FlagClipView(SkipClipView):
    """Flag a clip the caller holds as broken (does not play, corrupt, wrong content); enough
    flags from its holders pull it until a lead restores it."""

    broken = True


class ClipSerializer(serializers.ModelSerializer):
    class Meta:
        model = Clip
        fields = [
            "id",
            "round",
            "condition",
            "source_kind",
            "source_name",
            "seed",
            "frames",
            "fps",
            "width",
            "height",
            "duration",
            "status",
            "target_ratings",
            "rating_count",
            "created_at",
        ]


class ClipDetailView(APIView):
    """A clip's metadata: leads see everything; an annotator only what their lease shows."""

    @extend_schema(responses={200: ClipSerializer})
    def get(self, request, clip_id: int):
        clip = get_object_or_404(Clip.objects.select_related("condition"), pk=clip_id)
        if not can_view_clip(request.user, clip.pk):
            return _error("You may not view this clip.", 403)
        if IsLead().has_permission(request, self):
            return Response({**ClipSerializer(clip).data, **annotator_clip_payload(clip)})
        return Response(annotator_clip_payload(clip))


class ClipLabelSerializer(serializers.ModelSerializer):
    class Meta:
        model = ClipLabel
        fields = "__all__"


class ClipLabelView(APIView):
    """The aggregated label of a clip (leads only: annotators never see others' ratings)."""

    permission_classes = [IsAuthenticated, IsLead]

    @extend_schema(responses={200: ClipLabelSerializer})
    def get(self, request, clip_id: int):
        label = get_object_or_404(ClipLabel, clip_id=clip_id)
        return Response(ClipLabelSerializer(label).data)


class ImportRequest(serializers.Serializer):
    manifest = serializers.FileField(required=False, help_text="JSONL or CSV manifest file")
    rows = serializers.ListField(
        child=serializers.DictField(), required=False, help_text="manifest rows as JSON"
    )
    round_id = serializers.IntegerField(required=False, help_text="round for rows that name none")

    def validate(self, attrs):
        if not attrs.get("manifest") and not attrs.get("rows"):
            raise serializers.ValidationError("send a manifest file or a list of rows")
        return attrs


class ImportListView(APIView):
    """Import clips from a manifest (paths under the allowed import roots). Leads only."""

    permission_classes = [IsAuthenticated, IsLead]
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(
        request=ImportRequest, responses={202: OpenApiResponse(description="batch report")}
    )
    def post(self, request):
        if (bad := _not_an_object(request)) is not None:
            return bad
        params = ImportRequest(data=request.data)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        if data.get("manifest"):
            upload = data["manifest"]
            rows = ingest.read_manifest(upload.read(), name=upload.name)
            name = upload.name
        else:
            rows, name = data["rows"], "api"
        batch = ingest.import_rows(
            rows=rows, manifest_name=name, created_by=request.user, round_id=data.get("round_id")
        )
        return Response(batch_report(batch), status=status.HTTP_202_ACCEPTED)


class ImportDetailView(APIView):
    permission_classes = [IsAuthenticated, IsLead]

    @extend_schema(responses={200: OpenApiResponse(description="batch report")})
    def get(self, request, batch_id: int):
        batch = get_object_or_404(ImportBatch, pk=batch_id)
        return Response(batch_report(batch))
