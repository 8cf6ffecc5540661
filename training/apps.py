from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    verbose_name = "Alignment training"

    def ready(self) -> None:
        from runs.jobs import register_job

        register_job("pairs", "training.jobs.pairs_job")
        for kind in ("gapo", "dpo", "sft"):
            register_job(kind, "training.jobs.train_policy_job")
        register_job("generation", "training.jobs.generation_job")
        register_job("generation_chunk", "training.jobs.generation_chunk_job")
        register_job("round", "training.services.loop.round_job")
