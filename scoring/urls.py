from django.urls import path

from scoring import api, views

app_name = "scoring"
urlpatterns = [
    path("reward-models/", views.reward_models_page, name="reward_models"),
    path("reward-models/<int:reward_model_id>/", views.reward_model_page, name="reward_model"),
    path("reward-models/launch/", views.launch_training_view, name="launch_training"),
    path("reward-models/score/", views.launch_scoring_view, name="launch_scoring"),
    path("lead/qa/<int:round_id>/", views.qa_page, name="qa"),
    path("lead/qa/<int:round_id>/act/", views.qa_action, name="qa_action"),
    path("api/reward-models/", api.RewardModelListView.as_view(), name="api_reward_models"),
    path("api/reward-models/train/", api.TrainRewardView.as_view(), name="api_train"),
    path(
        "api/reward-models/<int:reward_model_id>/",
        api.RewardModelDetailView.as_view(),
        name="api_reward_model",
    ),
    path(
        "api/reward-models/<int:reward_model_id>/score/",
        api.ScoreClipsView.as_view(),
        name="api_score",
    ),
    path(
        "api/reward-models/<int:reward_model_id>/scores/",
        api.ClipScoreListView.as_view(),
        name="api_scores",
    ),
]
