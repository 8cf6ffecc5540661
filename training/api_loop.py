"""The loop's API: launch, watch and resume a whole round (admin), and the scoreboard (lead)."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from labelhub.api import errors
from labelhub.roles import IsAdmin, IsLead
from labelhub.schema_docs import extend_schema
from runs.models import Run
from scoring.anime_reward.config import OBJECTIVES
from training import selectors
from training.services.evaluation import SCOPES
from training.services.loop import LOSSES, launch_round, resume_round


class RoundLaunchSerializer(serializers.Serializer):
    round_id = serializers.IntegerField(help_text="the rated round to learn from")
    next_round = serializers.CharField(max_length=200, help_text="round receiving the candidates")
    reward_model_id = serializers.IntegerField(required=False, allow_null=True)
    train_reward = serializers.BooleanField(required=False, default=False)
    loss = serializers.ChoiceField(choices=LOSSES, required=False, default="gapo")
    steps = serializers.IntegerField(required=False, min_value=1, default=1000)
    candidates = serializers.IntegerField(required=False, min_value=1, max_value=64, default=4)
    init_checkpoint_id = serializers.IntegerField(required=False, allow_null=True)
    reward_epochs = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    reward_objective = serializers.ChoiceField(
        choices=OBJECTIVES, required=False, default="regression"
    )
    test_fraction = serializers.FloatField(required=False, allow_null=True)
    seed = serializers.IntegerField(required=False, default=0)
    evaluate = serializers.ChoiceField(
        choices=["", *SCOPES],
        required=False,
        default="",
        help_text="end with policy-vs-base pairwise tasks on the held-out or the round's conditions",
    )


def _round(run: Run) -> dict:
    data = selectors.run_progress(run)
    data["steps"] = [
        {
            "key": step["key"],
            "label": step["label"],
            "state": step["state"],
            "run_ids": [child.pk for child in step["runs"]],
            "output_name": step["output_name"],
            "output": step["output"],
        }
        for step in selectors.round_steps(run)
    ]
    return data


class RoundLaunchView(APIView):
    """POST: run one round of the loop as a parent run with a child run per step (gpu queue)."""

    permission_classes = [IsAdmin]

    @extend_schema(
        request=RoundLaunchSerializer, responses={201: OpenApiTypes.OBJECT, **errors(400)}
    )
    def post(self, request):
        data = RoundLaunchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = launch_round(params=data.validated_data, created_by=request.user)
        return Response(_round(run), status=status.HTTP_201_CREATED)


class RoundDetailView(APIView):
    """GET: a round run's progress and its steps (state, child run ids, recorded output)."""

    permission_classes = [IsLead]

    @extend_schema(responses={200: OpenApiTypes.OBJECT, **errors(404)})
    def get(self, request, run_id: int):
        run = get_object_or_404(Run, pk=run_id, kind=Run.Kind.ROUND)
        return Response(_round(run))


class RoundResumeView(APIView):
    """POST: queue a failed or cancelled round again; steps already done are skipped."""

    permission_classes = [IsAdmin]

    @extend_schema(request=None, responses={202: OpenApiTypes.OBJECT, **errors(400, 404)})
    def post(self, request, run_id: int):
        get_object_or_404(Run, pk=run_id, kind=Run.Kind.ROUND)
        run = resume_round(run_id=run_id)
        return Response(_round(run), status=status.HTTP_202_ACCEPTED)


class ScoreboardView(APIView):
    """GET: per round and source (policy checkpoint, base generator or imported source): human
    means, AnimeReward means and the win rate against the baseline with its 95% interval."""

    permission_classes = [IsLead]

    @extend_schema(
        parameters=[
            OpenApiParameter("reward_model", int, description="reward model id (default latest)"),
            OpenApiParameter("baseline", str, description="source the win rate is against"),
        ],
        responses={200: OpenApiTypes.OBJECT, **errors(400)},
    )
    def get(self, request):
        reward_model = request.query_params.get("reward_model")
        if reward_model is not None and not reward_model.isdigit():
            return Response(
                {"detail": "reward_model must be an id"}, status=status.HTTP_400_BAD_REQUEST
            )
        return Response(
            selectors.scoreboard(
                reward_model_id=int(reward_model) if reward_model else None,
                baseline=request.query_params.get("baseline") or None,
            )
        )
