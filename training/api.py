"""Training runs API: admins launch, cancel and resume; leads and admins watch."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from labelhub.api import JSONObjectField, errors
from labelhub.roles import IsAdmin, IsLead
from labelhub.schema_docs import extend_schema
from runs.models import Run
from runs.workers import live_workers
from training import selectors
from training.services import launch


class LaunchSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=[str(k) for k in launch.LAUNCHABLE_KINDS])
    params = JSONObjectField(required=False, default=dict, help_text="parameters for the kind")


class ResumeSerializer(serializers.Serializer):
    max_steps = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=10_000_000,
        help_text="a new step budget; the old run's when absent",
    )


class RunSummarySerializer(serializers.Serializer):
    """A run as the list shows it (selectors.run_summary)."""

    id = serializers.IntegerField()
    kind = serializers.CharField()
    kind_display = serializers.CharField()
    status = serializers.CharField()
    step = serializers.IntegerField()
    total_steps = serializers.IntegerField()
    fraction = serializers.FloatField()
    eta_seconds = serializers.FloatField(allow_null=True)
    created_by = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    cancel_requested = serializers.BooleanField()
    checkpoint_path = serializers.CharField(allow_blank=True)
    resumed_from = serializers.IntegerField(allow_null=True)
    resumable = serializers.BooleanField()


class RunProgressSerializer(RunSummarySerializer):
    """A run with its parameters, metric series, log tail and artifacts (selectors.run_progress)."""

    params = serializers.JSONField()
    metrics = serializers.JSONField(help_text="series of {step, name: value, ...}")
    log_tail = serializers.CharField(allow_blank=True)
    artifacts = serializers.JSONField()


class RunListSerializer(serializers.Serializer):
    results = RunSummarySerializer(many=True)


class RunListView(APIView):
    """GET: recent runs (lead). POST {kind, params}: launch a run (admin)."""

    def get_permissions(self):
        return [IsAdmin()] if self.request.method == "POST" else [IsLead()]

    @extend_schema(
        operation_id="training_runs_list", responses={200: RunListSerializer, **errors()}
    )
    def get(self, request):
        return Response({"results": [selectors.run_summary(run) for run in selectors.runs()]})

    @extend_schema(
        request=LaunchSerializer, responses={201: RunProgressSerializer, **errors(400, 409)}
    )
    def post(self, request):
        data = LaunchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = launch.launch_run(
            kind=data.validated_data["kind"],
            params=data.validated_data["params"],
            created_by=request.user,
        )
        return Response(selectors.run_progress(run), status=status.HTTP_201_CREATED)


class RunDetailView(APIView):
    """GET: one run's live progress, ETA, metric series and log tail."""

    permission_classes = [IsLead]

    @extend_schema(responses={200: RunProgressSerializer, **errors(404)})
    def get(self, request, run_id: int):
        return Response(selectors.run_progress(get_object_or_404(Run, pk=run_id)))


class RunCancelView(APIView):
    """POST: cancel a queued run now, a running one at its next progress report."""

    permission_classes = [IsAdmin]

    @extend_schema(request=None, responses={200: RunProgressSerializer, **errors(404)})
    def post(self, request, run_id: int):
        get_object_or_404(Run, pk=run_id)
        return Response(selectors.run_progress(launch.cancel(run_id=run_id)))


class RunResumeView(APIView):
    """POST {max_steps?}: a new run continuing this one from its last checkpoint."""

    permission_classes = [IsAdmin]

    @extend_schema(
        request=ResumeSerializer, responses={201: RunProgressSerializer, **errors(400, 404, 409)}
    )
    def post(self, request, run_id: int):
        get_object_or_404(Run, pk=run_id)
        data = ResumeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = launch.resume(
            run_id=run_id, created_by=request.user, max_steps=data.validated_data.get("max_steps")
        )
        return Response(selectors.run_progress(run), status=status.HTTP_201_CREATED)


class WorkerSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="Celery node name (name@host)")
    host = serializers.CharField()
    queues = serializers.ListField(child=serializers.CharField())
    gpus = serializers.IntegerField(allow_null=True, help_text="null: busy, did not answer")
    state = serializers.ChoiceField(choices=["idle", "busy", "lost", "gone"])
    answered = serializers.BooleanField(help_text="answered Celery's inspection just now")
    runs = serializers.JSONField(help_text="the runs it holds: id, kind, parent, step, total")
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    broker_error = serializers.CharField(allow_blank=True)


class WorkerListSerializer(serializers.Serializer):
    results = WorkerSerializer(many=True)


class WorkerListView(APIView):
    """GET: the live workers per queue (Celery's inspection + our run rows): idle GPUs, busy
    ones with their runs and heartbeats, lost hosts."""

    permission_classes = [IsLead]

    @extend_schema(responses={200: WorkerListSerializer, **errors()})
    def get(self, request):
        return Response({"results": live_workers()})
