"""DRF endpoints for leads (exports, agreement, pairwise reports) and for pairwise judges."""

from __future__ import annotations

import json

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import ExportSnapshot, Round
from annotation.selectors.agreement import agreement_by_round, annotator_table
from annotation.selectors.exports import list_snapshots
from annotation.selectors.pairwise import iter_preference_pairs, task_for_judge, win_rate
from annotation.services.exports import request_snapshot_build
from annotation.services.pairwise import lease_next_pair, submit_judgement
from labelhub.api import BIGINT_MAX, errors, id_field
from labelhub.dimensions import DIMENSION_KEYS
from labelhub.roles import IsAnnotator, IsLead
from labelhub.schema_docs import extend_schema


class SnapshotSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", default=None, read_only=True)

    class Meta:
        model = ExportSnapshot
        fields = [
            "id",
            "status",
            "params",
            "files",
            "row_counts",
            "content_hash",
            "error",
            "created_by",
            "created_at",
            "finished_at",
        ]


class SnapshotRequestSerializer(serializers.Serializer):
    round_ids = serializers.ListField(
        child=id_field(), required=False, allow_null=True, max_length=1000
    )
    test_fraction = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.1)
    seed = serializers.IntegerField(default=0, min_value=0, max_value=BIGINT_MAX)
    include_ratings = serializers.BooleanField(default=False)


class SnapshotListView(APIView):
    """GET: every snapshot with its parameters, counts and hash. POST: start a new one."""

    permission_classes = [IsLead]
    serializer_class = SnapshotSerializer

    @extend_schema(responses={200: SnapshotSerializer(many=True), **errors()})
    def get(self, request):
        return Response(SnapshotSerializer(list_snapshots(), many=True).data)

    @extend_schema(
        request=SnapshotRequestSerializer,
        responses={202: SnapshotSerializer, **errors(400)},
        description="Start building a snapshot; poll its detail until status is ready or failed.",
    )
    def post(self, request):
        params = SnapshotRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            data = params.validated_data
            snapshot = request_snapshot_build(
                round_ids=data.get("round_ids"),
                test_fraction=data["test_fraction"],
                seed=data["seed"],
                include_ratings=data["include_ratings"],
                created_by=request.user,
            )
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(SnapshotSerializer(snapshot).data, status=status.HTTP_202_ACCEPTED)


class SnapshotDetailView(APIView):
    permission_classes = [IsLead]
    serializer_class = SnapshotSerializer

    @extend_schema(responses={200: SnapshotSerializer, **errors(404)})
    def get(self, request, snapshot_id: int):
        snapshot = get_object_or_404(list_snapshots(), pk=snapshot_id)
        return Response(SnapshotSerializer(snapshot).data)


class AnnotatorRowSerializer(serializers.Serializer):
    annotator_id = serializers.IntegerField()
    username = serializers.CharField()
    count = serializers.IntegerField()
    median_seconds = serializers.FloatField(allow_null=True)
    leniency = serializers.FloatField(allow_null=True)
    correlation = serializers.FloatField(allow_null=True)
    gold_count = serializers.IntegerField()
    gold_accuracy = serializers.FloatField(allow_null=True)
    flags = serializers.ListField(child=serializers.CharField())


class AgreementSerializer(serializers.Serializer):
    round_id = serializers.IntegerField()
    alpha = serializers.DictField(
        child=serializers.DictField(child=serializers.FloatField(allow_null=True)),
        help_text="level -> dimension -> Krippendorff's alpha (null when undefined)",
    )
    annotators = AnnotatorRowSerializer(many=True)


class AgreementView(APIView):
    """Alpha per dimension and level, and the annotator table, for one round."""

    permission_classes = [IsLead]

    @extend_schema(responses={200: AgreementSerializer, **errors(404)})
    def get(self, request, round_id: int):
        round_ = get_object_or_404(Round, pk=round_id)
        table = annotator_table(round_ids=[round_.pk])
        return Response(
            {
                "round_id": round_.pk,
                "alpha": agreement_by_round([round_.pk])[round_.pk],
                "annotators": [
                    {
                        "annotator_id": row.annotator_id,
                        "username": row.username,
                        "count": row.count,
                        "median_seconds": row.median_seconds,
                        "leniency": row.leniency,
                        "correlation": row.correlation,
                        "gold_count": row.gold_count,
                        "gold_accuracy": row.gold_accuracy,
                        "flags": row.flags,
                    }
                    for row in table
                ],
            }
        )


class OutcomeSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    rate = serializers.FloatField(allow_null=True, help_text="null when no task is judged")
    ci95 = serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2)


class WinRateSerializer(serializers.Serializer):
    source_x = serializers.CharField()
    source_y = serializers.CharField()
    tasks = serializers.IntegerField()
    win = OutcomeSerializer()
    tie = OutcomeSerializer()
    loss = OutcomeSerializer()


class WinRateView(APIView):
    """Win / tie / loss of source ``x`` against ``y`` with 95% intervals (2-of-3 majority)."""

    permission_classes = [IsLead]

    @extend_schema(
        parameters=[
            OpenApiParameter("x", str, required=True, description="source name"),
            OpenApiParameter("y", str, required=True, description="the other source name"),
        ],
        responses={200: WinRateSerializer, **errors(400)},
    )
    def get(self, request):
        x, y = request.query_params.get("x", ""), request.query_params.get("y", "")
        if not x or not y:
            return Response({"detail": "give two sources as ?x=...&y=..."}, status=400)
        return Response(win_rate(source_x=x, source_y=y).as_dict())


class PreferencePairsView(APIView):
    """Human-judged pairs with a majority winner, streamed as JSON lines."""

    permission_classes = [IsLead]

    @extend_schema(
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(
                OpenApiTypes.STR, description="one JSON object per line"
            ),
            **errors(),
        }
    )
    def get(self, request):
        lines = (json.dumps(pair) + "\n" for pair in iter_preference_pairs())
        response = StreamingHttpResponse(lines, content_type="application/x-ndjson")
        response["Content-Disposition"] = 'attachment; filename="preference_pairs.jsonl"'
        return response


class NextPairRequest(serializers.Serializer):
    exclude = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1),
        required=False,
        default=list,
        max_length=10,
        help_text="task ids the page already shows",
    )


class PairSideSerializer(serializers.Serializer):
    video_url = serializers.CharField()
    poster_url = serializers.CharField()


class PairTaskSerializer(serializers.Serializer):
    task_id = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    prompt = serializers.CharField(allow_blank=True)
    condition_image_url = serializers.CharField()
    character_reference_url = serializers.CharField(allow_blank=True)
    fps = serializers.FloatField(allow_null=True)
    left = PairSideSerializer()
    right = PairSideSerializer()


class NextPairView(APIView):
    """POST: lease the judge's next pairwise task (204 when there is none)."""

    permission_classes = [IsAuthenticated, IsAnnotator]

    @extend_schema(
        request=NextPairRequest,
        responses={200: PairTaskSerializer, 204: None, **errors(400)},
    )
    def post(self, request):
        if not isinstance(request.data, dict):
            return Response({"detail": "the request body must be a JSON object"}, status=400)
        params = NextPairRequest(data=request.data)
        params.is_valid(raise_exception=True)
        lease = lease_next_pair(judge=request.user, exclude=params.validated_data["exclude"])
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(task_for_judge(lease))


class JudgementSerializer(serializers.Serializer):
    choice = serializers.ChoiceField(choices=["left", "right", "tie"])
    dimensions = serializers.DictField(
        child=serializers.ChoiceField(choices=["left", "right", "tie"]),
        required=False,
        default=dict,
    )
    seconds_spent = serializers.FloatField(min_value=0, max_value=24 * 3600, default=0)

    def validate_dimensions(self, value: dict) -> dict:
        unknown = sorted(set(value) - set(DIMENSION_KEYS))
        if unknown:  # refused, not dropped: a typo must not silently lose the judge's choice
            raise serializers.ValidationError(
                f"unknown dimension(s) {', '.join(unknown)}; expected keys of "
                f"{', '.join(DIMENSION_KEYS)}"
            )
        return value


class JudgementCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    task_id = serializers.IntegerField()


class JudgePairView(APIView):
    """POST the judge's verdict in screen sides (left / right / tie)."""

    permission_classes = [IsAuthenticated, IsAnnotator]

    @extend_schema(
        request=JudgementSerializer,
        responses={201: JudgementCreatedSerializer, **errors(400, 403, 404, 409)},
    )
    def post(self, request, task_id: int):
        if not isinstance(request.data, dict):
            return Response({"detail": "the request body must be a JSON object"}, status=400)
        data = JudgementSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        judgement = submit_judgement(
            task_id=task_id,
            judge=request.user,
            side=data.validated_data["choice"],
            dimension_sides=data.validated_data["dimensions"],
            seconds_spent=data.validated_data["seconds_spent"],
        )
        return Response({"id": judgement.pk, "task_id": task_id}, status=status.HTTP_201_CREATED)
