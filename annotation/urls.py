from django.urls import include, path

from annotation.api import annotate as api
from annotation.api import guidelines as guidelines_api
from annotation.api import history as history_api
from annotation.views import annotate as views
from annotation.views import guidelines as guidelines_views
from annotation.views import label_studio as label_studio_views
from annotation.views.media import clip_media

app_name = "annotation"

urlpatterns = [
    path("", views.home, name="home"),
    path("annotate/<int:round_id>/", views.annotate_page, name="annotate"),
    path("lead/import/", views.import_page, name="import"),
    path("lead/import/<int:batch_id>/", views.import_report_page, name="import_report"),
    path(
        "lead/import/label-studio/",
        label_studio_views.label_studio_import_page,
        name="import_label_studio",
    ),
    path("media/clip/<int:clip_id>/<str:kind>", clip_media, name="clip_media"),
    path("api/me/", api.MeView.as_view(), name="api_me"),
    path("api/rounds/<int:round_id>/next/", api.NextClipView.as_view(), name="api_next"),
    path("api/clips/<int:clip_id>/", api.ClipDetailView.as_view(), name="api_clip"),
    path("api/clips/<int:clip_id>/label/", api.ClipLabelView.as_view(), name="api_clip_label"),
    path("api/clips/<int:clip_id>/ratings/", api.SubmitRatingView.as_view(), name="api_submit"),
    path("api/clips/<int:clip_id>/skip/", api.SkipClipView.as_view(), name="api_skip"),
    path("api/clips/<int:clip_id>/flag/", api.FlagClipView.as_view(), name="api_flag"),
    path("api/imports/", api.ImportListView.as_view(), name="api_imports"),
    path("api/imports/<int:batch_id>/", api.ImportDetailView.as_view(), name="api_import"),
    # Annotators' history, corrections, guidelines and own page.
    path("me/", views.me_page, name="me"),
    path("api/me/ratings/", history_api.MyRatingsView.as_view(), name="api_my_ratings"),
    path(
        "api/me/ratings/<int:rating_id>/", history_api.MyRatingView.as_view(), name="api_my_rating"
    ),
    path(
        "api/rounds/<int:round_id>/guidelines/seen/",
        guidelines_api.GuidelinesSeenView.as_view(),
        name="api_guidelines_seen",
    ),
    path(
        "lead/rounds/<int:round_id>/guidelines/",
        guidelines_views.guidelines_page,
        name="lead_guidelines",
    ),
    path(
        "lead/rounds/<int:round_id>/guidelines/examples/",
        guidelines_views.example_add,
        name="lead_guideline_example_add",
    ),
    path(
        "lead/rounds/<int:round_id>/guidelines/examples/<int:example_id>/remove/",
        guidelines_views.example_remove,
        name="lead_guideline_example_remove",
    ),
    path("", include("annotation.urls_lead")),
]
