"""Lead tools and pairwise judging; included from annotation/urls.py."""

from django.urls import path

from annotation.api import lead as api
from annotation.views import characters as character_views
from annotation.views import datasets as dataset_views
from annotation.views import lead as views
from annotation.views import team as team_views
from annotation.views.pairwise import judge_page

urlpatterns = [
    path("lead/", views.dashboard_page, name="lead_dashboard"),
    path("lead/clips/<int:clip_id>/", views.clip_page, name="lead_clip"),
    path("lead/clips/<int:clip_id>/gold/", views.clip_gold_set, name="lead_clip_gold"),
    path(
        "lead/clips/<int:clip_id>/gold/remove/",
        views.clip_gold_remove,
        name="lead_clip_gold_remove",
    ),
    path("lead/clips/<int:clip_id>/restore/", views.clip_restore, name="lead_clip_restore"),
    path("lead/rounds/<int:round_id>/", views.round_settings_page, name="lead_round"),
    path("lead/team/", team_views.team_page, name="lead_team"),
    path("lead/team/new/", team_views.team_create, name="lead_team_create"),
    path("lead/team/<int:user_id>/", team_views.team_member_update, name="lead_team_member"),
    path("lead/rounds/<int:round_id>/team/", team_views.round_team_update, name="lead_round_team"),
    path("lead/characters/", character_views.characters_page, name="lead_characters"),
    path(
        "lead/characters/<int:character_id>/",
        character_views.character_update,
        name="lead_character",
    ),
    path(
        "lead/characters/<int:character_id>/images/",
        character_views.character_images_add,
        name="lead_character_images",
    ),
    path(
        "lead/characters/<int:character_id>/images/<int:image_id>/remove/",
        character_views.character_image_remove,
        name="lead_character_image_remove",
    ),
    path(
        "media/character/<int:image_id>",
        character_views.character_image_file,
        name="lead_character_image_file",
    ),
    path("lead/exports/", views.exports_page, name="lead_exports"),
    path(
        "lead/exports/<int:snapshot_id>/dataset-folder",
        dataset_views.request_folder,
        name="lead_dataset_folder",
    ),
    path(
        "lead/dataset-folders/<int:folder_id>.tar",
        dataset_views.download_folder,
        name="lead_dataset_archive",
    ),
    # After the dataset-folder path above, which it would otherwise swallow as a file kind.
    path("lead/exports/<int:snapshot_id>/<str:kind>", views.export_file, name="lead_export_file"),
    path("lead/pairwise/", views.pairwise_report_page, name="lead_pairwise"),
    path("pairwise/", judge_page, name="pairwise_judge"),
    path("api/lead/exports/", api.SnapshotListView.as_view(), name="api_lead_exports"),
    path(
        "api/lead/exports/<int:snapshot_id>/",
        api.SnapshotDetailView.as_view(),
        name="api_lead_export",
    ),
    path(
        "api/lead/rounds/<int:round_id>/agreement/",
        api.AgreementView.as_view(),
        name="api_lead_agreement",
    ),
    path("api/lead/pairwise/win-rate/", api.WinRateView.as_view(), name="api_lead_win_rate"),
    path(
        "api/lead/pairwise/preference-pairs.jsonl",
        api.PreferencePairsView.as_view(),
        name="api_lead_preference_pairs",
    ),
    path("api/pairwise/next/", api.NextPairView.as_view(), name="api_pairwise_next"),
    path(
        "api/pairwise/<int:task_id>/judge/", api.JudgePairView.as_view(), name="api_pairwise_judge"
    ),
]
