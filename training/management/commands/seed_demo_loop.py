"""manage.py seed_demo_loop: close the loop once on the rated demo round (``training.demo``).

Each run goes to the ``gpu`` worker (``make start``) like one launched from the Training runs
page; this command follows its progress and prints where to look.
"""

from django.core.management.base import BaseCommand, CommandError

from runs.cli import follow
from training.demo import run_demo_loop


class Command(BaseCommand):
    help = "Demo: reward model, scores, pairs, GAPO, generated round 2 and pairwise tasks."

    def handle(self, *args, **options):
        try:
            loop = run_demo_loop(
                follow=lambda run: follow(run.pk, self.stdout), say=self.stdout.write
            )
        except (RuntimeError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"the loop is closed: reward model at /reward-models/{loop.reward_model_id}/, "
                f"runs at /runs/, round 2 at /annotate/{loop.next_round_id}/, "
                f"{loop.pairwise_tasks} pairwise task(s) at /pairwise/"
            )
        )
