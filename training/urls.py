from django.urls import path

from training import api, views

app_name = "training"
urlpatterns = [
    path("runs/", views.runs_page, name="runs"),
    path("runs/launch/", views.launch_view, name="launch"),
    path("runs/<int:run_id>/", views.run_page, name="run"),
    path("runs/<int:run_id>/cancel/", views.cancel_view, name="cancel"),
    path("runs/<int:run_id>/resume/", views.resume_view, name="resume"),
    path("api/training/runs/", api.RunListView.as_view(), name="api_runs"),
    path("api/training/runs/<int:run_id>/", api.RunDetailView.as_view(), name="api_run"),
    path(
        "api/training/runs/<int:run_id>/cancel/", api.RunCancelView.as_view(), name="api_run_cancel"
    ),
    path(
        "api/training/runs/<int:run_id>/resume/", api.RunResumeView.as_view(), name="api_run_resume"
    ),
]
