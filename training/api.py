"""Training runs API: admins launch, cancel and resume; leads and admins watch."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from labelhub.roles import IsAdmin, IsLead
from runs.models import TrainingRun
from training import selectors
from training.services import launch


class LaunchSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[str(k) for k in launch.LAUNCHABLE_KINDS])
    params = serializers.DictField(required=False, default=dict)


class RunListView(APIView):
    """GET: recent runs (lead). POST {kind, params}: launch a run (admin)."""

    def get_permissions(self):
        return [IsAdmin()] if self.request.method == "POST" else [IsLead()]

    def get(self, request):
        return Response({"results": [selectors.run_summary(run) for run in selectors.runs()]})

    def post(self, request):
        data = LaunchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            run = launch.launch_run(
                kind=data.validated_data["kind"],
                params=data.validated_data["params"],
                created_by=request.user,
            )
        except launch.InvalidParams as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(selectors.run_progress(run), status=status.HTTP_201_CREATED)


class RunDetailView(APIView):
    """GET: one run's live progress, ETA, metric series and log tail."""

    permission_classes = [IsLead]

    def get(self, request, run_id: int):
        return Response(selectors.run_progress(get_object_or_404(TrainingRun, pk=run_id)))


class RunCancelView(APIView):
    permission_classes = [IsAdmin]

    def post(self, request, run_id: int):
        get_object_or_404(TrainingRun, pk=run_id)
        return Response(selectors.run_progress(launch.cancel(run_id=run_id)))


class RunResumeView(APIView):
    """POST {max_steps?}: a new run continuing this one from its last checkpoint."""

    permission_classes = [IsAdmin]

    def post(self, request, run_id: int):
        get_object_or_404(TrainingRun, pk=run_id)
        max_steps = request.data.get("max_steps") if isinstance(request.data, dict) else None
        try:
            run = launch.resume(
                run_id=run_id,
                created_by=request.user,
                max_steps=int(max_steps) if max_steps not in (None, "") else None,
            )
        except (launch.InvalidParams, ValueError) as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(selectors.run_progress(run), status=status.HTTP_201_CREATED)
