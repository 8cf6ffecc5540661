from django.urls import path

from training import api, api_loop, views

app_name = "training"
urlpatterns = [
    path("runs/", views.runs_page, name="runs"),
    path("runs/launch/", views.launch_view, name="launch"),
    path("runs/launch-round/", views.launch_round_view, name="launch_round"),
    path("scoreboard/", views.scoreboard_page, name="scoreboard"),
    path("scoreboard/clips/", views.scoreboard_clips_page, name="scoreboard_clips"),
    path("runs/<int:run_id>/", views.run_page, name="run"),
    path("runs/<int:run_id>/cancel/", views.cancel_view, name="cancel"),
    path("runs/<int:run_id>/resume/", views.resume_view, name="resume"),
    path("api/training/runs/", api.RunListView.as_view(), name="api_runs"),
    path("api/training/runs/<int:run_id>/", api.RunDetailView.as_view(), name="api_run"),
    path("api/training/workers/", api.WorkerListView.as_view(), name="api_workers"),
    path(
        "api/training/runs/<int:run_id>/cancel/", api.RunCancelView.as_view(), name="api_run_cancel"
    ),
    path(
        "api/training/runs/<int:run_id>/resume/", api.RunResumeView.as_view(), name="api_run_resume"
    ),
    path("api/training/rounds/", api_loop.RoundLaunchView.as_view(), name="api_rounds"),
    path("api/training/rounds/<int:run_id>/", api_loop.RoundDetailView.as_view(), name="api_round"),
    path(
        "api/training/rounds/<int:run_id>/resume/",
        api_loop.RoundResumeView.as_view(),
        name="api_round_resume",
    ),
    path("api/training/scoreboard/", api_loop.ScoreboardView.as_view(), name="api_scoreboard"),
]
