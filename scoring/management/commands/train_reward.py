"""Train AnimeReward on an export snapshot: ``manage.py train_reward --snapshot 3 --epochs 40``.

Runs here with a progress bar (the run's row is updated as well), or ``--enqueue`` sends it to the
``gpu`` queue instead.
"""

from django.core.management.base import BaseCommand, CommandError

from labelhub.dimensions import DIMENSION_KEYS
from runs.cli import run_here
from scoring import services
from scoring.anime_reward.config import RewardTrainConfig
from scoring.models import RewardModel

HELP = RewardTrainConfig.help()


class Command(BaseCommand):
    help = (
        "Train the six AnimeReward regressors on an export snapshot and evaluate on its test split."
    )

    def add_arguments(self, parser):
        parser.add_argument("--snapshot", type=int, required=True, help="ExportSnapshot id (ready)")
        parser.add_argument(
            "--name", default="", help="RewardModel name (default: animereward-<preset>-run<id>)"
        )
        parser.add_argument("--preset", help=HELP["preset"])
        parser.add_argument("--epochs", type=int, help=HELP["epochs"])
        parser.add_argument("--batch-size", type=int, help=HELP["batch_size"])
        parser.add_argument("--learning-rate", type=float, help=HELP["learning_rate"])
        parser.add_argument(
            "--dimensions", help=f"comma-separated subset of {', '.join(DIMENSION_KEYS)}"
        )
        parser.add_argument(
            "--finetune-encoders", action="store_true", default=None, help=HELP["finetune_encoders"]
        )
        parser.add_argument("--device", help=HELP["device"])
        parser.add_argument("--mixed-precision", help=HELP["mixed_precision"])
        parser.add_argument("--seed", type=int, help=HELP["seed"])
        parser.add_argument(
            "--enqueue", action="store_true", help="send to the gpu queue instead of running here"
        )

    def handle(self, *args, **options):
        config = {
            key: options[key]
            for key in (
                "preset",
                "epochs",
                "batch_size",
                "learning_rate",
                "finetune_encoders",
                "device",
                "mixed_precision",
                "seed",
            )
            if options[key] is not None
        }
        if options["dimensions"]:
            config["dimensions"] = [
                d.strip() for d in options["dimensions"].split(",") if d.strip()
            ]
        try:
            run = services.request_reward_training(
                snapshot_id=options["snapshot"],
                config=config,
                name=options["name"],
                enqueue=options["enqueue"],
            )
        except Exception as exc:  # bad snapshot id or config: say why, no traceback
            raise CommandError(str(exc)) from exc
        if options["enqueue"]:
            self.stdout.write(f"queued reward training run {run.pk}")
            return
        run = run_here(run, f"reward run {run.pk}")
        reward_model = RewardModel.objects.get(pk=run.artifacts["reward_model_id"])
        self.stdout.write(
            f"reward model {reward_model.pk} ({reward_model.name}) saved to {reward_model.checkpoint_dir}"
        )
        for key, metrics in reward_model.metrics.items():
            figures = ", ".join(
                f"{name} {value:.3f}" for name, value in metrics.items() if isinstance(value, float)
            )
            self.stdout.write(f"  {key}: {figures}")
