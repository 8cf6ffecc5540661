"""Celery tasks for AnimeReward, on the ``gpu`` queue: ids in, ids out; the services check the run.

Services are imported inside the tasks so a CPU worker on the ``default`` queue never loads torch.
"""

from labelhub.celery import app


@app.task(name="scoring.train_reward", acks_late=True)
def train_reward_task(run_id: int) -> int | None:
    """Train a reward model for a queued run; returns the RewardModel id (None if it did not run)."""
    from scoring import services

    reward_model = services.train_reward_model(run_id=run_id)
    return reward_model.pk if reward_model else None


@app.task(name="scoring.score_clips", acks_late=True)
def score_clips_task(run_id: int) -> dict | None:
    """Score the clips of a queued scoring run; returns counts (None if it did not run)."""
    from scoring import services

    return services.run_scoring(run_id=run_id)
