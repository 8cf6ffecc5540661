from django.apps import AppConfig


class ScoringConfig(AppConfig):
    name = "scoring"
    verbose_name = "AnimeReward scoring"

    def ready(self) -> None:
        from runs.jobs import register_job

        register_job("reward_training", "scoring.jobs.train_reward_job")
        register_job("scoring", "scoring.jobs.scoring_job")
        register_job("scoring_chunk", "scoring.jobs.scoring_chunk_job")
