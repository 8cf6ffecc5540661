from django.urls import include, path

from annotation.api import annotate as api
from annotation.views import annotate as views
from annotation.views.media import clip_media

app_name = "annotation"

urlpatterns = [
    path("", views.home, name="home"),
    path("annotate/<int:round_id>/", views.annotate_page, name="annotate"),
    path("lead/import/", views.import_page, name="import"),
    path("lead/import/<int:batch_id>/", views.import_report_page, name="import_report"),
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
    path("", include("annotation.urls_lead")),
]
