"""Score clips with a reward model: ``manage.py score_clips --reward-model 2 --round 5``."""

from django.core.management.base import BaseCommand, CommandError

from runs.cli import run_here
from scoring import services


class Command(BaseCommand):
    help = "Score a round's clips (or a list of clips) with a RewardModel into ClipScore rows."

    def add_arguments(self, parser):
        parser.add_argument("--reward-model", type=int, required=True, help="RewardModel id")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--round", type=int, help="score every clip of this round")
        target.add_argument("--clips", help="comma-separated clip ids")
        parser.add_argument("--batch-size", type=int, default=8, help="clips per model batch")
        parser.add_argument(
            "--enqueue", action="store_true", help="send to the gpu queue instead of running here"
        )

    def handle(self, *args, **options):
        clip_ids = (
            [int(c) for c in options["clips"].split(",") if c.strip()] if options["clips"] else None
        )
        try:
            run = services.request_scoring(
                reward_model_id=options["reward_model"],
                round_id=options["round"],
                clip_ids=clip_ids,
                batch_size=options["batch_size"],
                enqueue=options["enqueue"],
            )
        except Exception as exc:
            raise CommandError(str(exc)) from exc
        if options["enqueue"]:
            self.stdout.write(f"queued scoring run {run.pk}")
            return
        run = run_here(run, f"scoring run {run.pk}")
        counts = run.artifacts
        self.stdout.write(
            f"scored {counts['scored']}, failed {counts['failed']}, "
            f"already scored {counts['already_scored']}"
        )
