"""AnimeReward API, thin: leads and admins read reward models and scores; admins launch training
and scoring (both run on the ``gpu`` queue and report on their TrainingRun)."""

from __future__ import annotations

from django.core.exceptions import ObjectDoesNotExist
from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from labelhub.dimensions import DIMENSION_KEYS
from labelhub.roles import IsAdmin, IsLead
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


class ClipScoreSerializer(serializers.ModelSerializer):
    class Meta:
        model = ClipScore
        fields = ["clip", "reward_model", *DIMENSION_KEYS, "overall", "error", "created_at"]


class TrainSerializer(serializers.Serializer):
    snapshot_id = serializers.IntegerField()
    name = serializers.CharField(required=False, default="", allow_blank=True, max_length=200)
    config = serializers.DictField(required=False, default=dict)


class ScoreSerializer(serializers.Serializer):
    round_id = serializers.IntegerField(required=False)
    clip_ids = serializers.ListField(child=serializers.IntegerField(), required=False)
    batch_size = serializers.IntegerField(required=False, default=8, min_value=1, max_value=256)


def _launched(run) -> Response:
    return Response({"run_id": run.pk, "status": run.status}, status=status.HTTP_202_ACCEPTED)


class RewardModelListView(APIView):
    permission_classes = [IsLead]

    def get(self, request):
        return Response(
            {"results": RewardModelSerializer(selectors.list_reward_models(), many=True).data}
        )


class RewardModelDetailView(APIView):
    permission_classes = [IsLead]

    def get(self, request, reward_model_id: int):
        reward_model = get_object_or_404(RewardModel, pk=reward_model_id)
        return Response(
            {**RewardModelSerializer(reward_model).data, "evaluation": reward_model.evaluation}
        )


class TrainRewardView(APIView):
    """POST {snapshot_id, name?, config?}: queue reward training on an export snapshot (admin)."""

    permission_classes = [IsAdmin]

    def post(self, request):
        data = TrainSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            run = services.request_reward_training(created_by=request.user, **data.validated_data)
        except (ValueError, TypeError, ObjectDoesNotExist) as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        return _launched(run)


class ScoreClipsView(APIView):
    """POST {round_id} or {clip_ids}: queue scoring with this reward model (admin)."""

    permission_classes = [IsAdmin]

    def post(self, request, reward_model_id: int):
        get_object_or_404(RewardModel, pk=reward_model_id)
        data = ScoreSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            run = services.request_scoring(
                reward_model_id=reward_model_id,
                created_by=request.user,
                round_id=data.validated_data.get("round_id"),
                clip_ids=data.validated_data.get("clip_ids"),
                batch_size=data.validated_data["batch_size"],
            )
        except ValueError as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        return _launched(run)


class ClipScoreListView(APIView):
    """GET ?round=<id>: the model's scores per clip (lead)."""

    permission_classes = [IsLead]

    def get(self, request, reward_model_id: int):
        get_object_or_404(RewardModel, pk=reward_model_id)
        round_id = request.query_params.get("round")
        scores = selectors.clip_scores(
            reward_model_id=reward_model_id,
            round_id=int(round_id) if round_id and round_id.isdigit() else None,
        )
        return Response({"results": ClipScoreSerializer(scores, many=True).data})
