"""AnimeReward API, thin: leads and admins read reward models and scores; admins launch training
and scoring (both run on the ``gpu`` queue and report on their Run)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from labelhub.api import JSONObjectField, errors, id_field
from labelhub.dimensions import DIMENSION_KEYS
from labelhub.roles import IsAdmin, IsLead
from labelhub.schema_docs import extend_schema
from scoring import selectors, services
from scoring.models import ClipScore, RewardModel


class RewardModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = RewardModel
        fields = [
            "id",
            "name",
            "preset",
            "checkpoint_dir",
            "run",
            "config",
            "metrics",
            "created_at",
        ]


class RewardModelDetailSerializer(RewardModelSerializer):
    class Meta(RewardModelSerializer.Meta):
        fields = [*RewardModelSerializer.Meta.fields, "evaluation"]


class RewardModelListSerializer(serializers.Serializer):
    results = RewardModelSerializer(many=True)


class ClipScoreSerializer(serializers.ModelSerializer):
    class Meta:
        model = ClipScore
        fields = ["clip", "reward_model", *DIMENSION_KEYS, "overall", "error", "created_at"]


class ClipScoreListSerializer(serializers.Serializer):
    results = ClipScoreSerializer(many=True)


class ClipScoreQuery(serializers.Serializer):
    round = id_field(required=False, help_text="only clips of this round")


class TrainSerializer(serializers.Serializer):
    snapshot_id = id_field()
    name = serializers.CharField(required=False, default="", allow_blank=True, max_length=200)
    config = JSONObjectField(required=False, default=dict, help_text="RewardTrainConfig fields")
    gpus = serializers.IntegerField(
        required=False,
        default=1,
        min_value=1,
        max_value=64,
        help_text="train on this many GPUs of one host (queue gpu-xN; heads only, not anisora)",
    )


class ScoreSerializer(serializers.Serializer):
    round_id = id_field(required=False)
    clip_ids = serializers.ListField(child=id_field(), required=False, max_length=100_000)
    batch_size = serializers.IntegerField(required=False, default=8, min_value=1, max_value=256)


class LaunchedSerializer(serializers.Serializer):
    run_id = serializers.IntegerField()
    status = serializers.CharField()


def _launched(run) -> Response:
    return Response({"run_id": run.pk, "status": run.status}, status=status.HTTP_202_ACCEPTED)


class RewardModelListView(APIView):
    permission_classes = [IsLead]

    @extend_schema(
        operation_id="reward_models_list", responses={200: RewardModelListSerializer, **errors()}
    )
    def get(self, request):
        return Response(
            {"results": RewardModelSerializer(selectors.list_reward_models(), many=True).data}
        )


class RewardModelDetailView(APIView):
    permission_classes = [IsLead]

    @extend_schema(responses={200: RewardModelDetailSerializer, **errors(404)})
    def get(self, request, reward_model_id: int):
        reward_model = get_object_or_404(RewardModel, pk=reward_model_id)
        return Response(RewardModelDetailSerializer(reward_model).data)


class TrainRewardView(APIView):
    """POST {snapshot_id, name?, config?, gpus?}: queue reward training on an export snapshot
    (admin); ``gpus`` N > 1 sends it to queue ``gpu-xN``."""

    permission_classes = [IsAdmin]

    @extend_schema(
        request=TrainSerializer, responses={202: LaunchedSerializer, **errors(400, 404, 409)}
    )
    def post(self, request):
        data = TrainSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.request_reward_training(created_by=request.user, **data.validated_data)
        return _launched(run)


class ScoreClipsView(APIView):
    """POST {round_id} or {clip_ids}: queue scoring with this reward model (admin)."""

    permission_classes = [IsAdmin]

    @extend_schema(
        request=ScoreSerializer, responses={202: LaunchedSerializer, **errors(400, 404, 409)}
    )
    def post(self, request, reward_model_id: int):
        get_object_or_404(RewardModel, pk=reward_model_id)
        data = ScoreSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = services.request_scoring(
            reward_model_id=reward_model_id,
            created_by=request.user,
            round_id=data.validated_data.get("round_id"),
            clip_ids=data.validated_data.get("clip_ids"),
            batch_size=data.validated_data["batch_size"],
        )
        return _launched(run)


class ClipScoreListView(APIView):
    """GET ?round=<id>: the model's scores per clip (lead)."""

    permission_classes = [IsLead]

    @extend_schema(
        parameters=[ClipScoreQuery],
        responses={200: ClipScoreListSerializer, **errors(400, 404)},
    )
    def get(self, request, reward_model_id: int):
        get_object_or_404(RewardModel, pk=reward_model_id)
        # An empty ?round= means all rounds; anything else must be a round id (400 otherwise).
        query = ClipScoreQuery(data={k: v for k, v in request.query_params.items() if v != ""})
        query.is_valid(raise_exception=True)
        scores = selectors.clip_scores(
            reward_model_id=reward_model_id, round_id=query.validated_data.get("round")
        )
        return Response({"results": ClipScoreSerializer(scores, many=True).data})
