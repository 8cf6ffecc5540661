"""Train AnimeReward on an export snapshot: ``manage.py train_reward --snapshot 3 --epochs 40``.

Runs here with a progress bar (the run's row is updated as well), or ``--enqueue`` sends it to the
``gpu`` queue instead.
"""

from django.core.management.base import BaseCommand, CommandError

from labelhub.dimensions import DIMENSION_KEYS
from runs.cli import run_here
from scoring import services
from scoring.anime_reward.config import (
    ANISORA_FINETUNE,
    OBJECTIVES,
    TIE_MODELS,
    RewardTrainConfig,
)
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
        parser.add_argument("--objective", choices=OBJECTIVES, help=HELP["objective"])
        parser.add_argument("--tie-model", choices=TIE_MODELS, help=HELP["tie_model"])
        parser.add_argument("--pair-weight", type=float, help=HELP["pair_weight"])
        parser.add_argument("--learning-rate", type=float, help=HELP["learning_rate"])
        parser.add_argument(
            "--encoder-learning-rate", type=float, help=HELP["encoder_learning_rate"]
        )
        parser.add_argument("--contrastive-weight", type=float, help=HELP["contrastive_weight"])
        parser.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="DIMENSION.SETTING=VALUE",
            dest="overrides",
            help="per-dimension setting, repeatable, e.g. "
            "--set text_consistency.encoder_learning_rate=1e-3 ("
            + HELP["dimension_overrides"]
            + ")",
        )
        parser.add_argument(
            "--dimensions", help=f"comma-separated subset of {', '.join(DIMENSION_KEYS)}"
        )
        parser.add_argument(
            "--finetune-encoders", action="store_true", default=None, help=HELP["finetune_encoders"]
        )
        parser.add_argument(
            "--release-finetune", choices=ANISORA_FINETUNE, help=HELP["release_finetune"]
        )
        parser.add_argument("--release-lora-rank", type=int, help=HELP["release_lora_rank"])
        parser.add_argument("--keyframes", type=int, help=HELP["keyframes"])
        parser.add_argument("--track-frames", type=int, help=HELP["track_frames"])
        parser.add_argument("--device", help=HELP["device"])
        parser.add_argument("--mixed-precision", help=HELP["mixed_precision"])
        parser.add_argument("--seed", type=int, help=HELP["seed"])
        parser.add_argument(
            "--gpus",
            type=int,
            default=1,
            help="train on this many GPUs of this host (accelerate launch); with --enqueue the "
            "run goes to queue gpu-xN. Heads only: encoder fine-tuning and anisora train on 1",
        )
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
                "objective",
                "tie_model",
                "pair_weight",
                "learning_rate",
                "encoder_learning_rate",
                "contrastive_weight",
                "finetune_encoders",
                "release_finetune",
                "release_lora_rank",
                "keyframes",
                "track_frames",
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
        if options["overrides"]:
            config["dimension_overrides"] = parse_overrides(options["overrides"])
        try:
            run = services.request_reward_training(
                snapshot_id=options["snapshot"],
                config=config,
                name=options["name"],
                gpus=options["gpus"],
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


def parse_overrides(items: list[str]) -> dict[str, dict[str, float]]:
    """``["text_consistency.encoder_learning_rate=1e-3", ...]`` -> {dimension: {setting: value}};
    the config validates the names and values."""
    out: dict[str, dict[str, float]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        dimension, dot, setting = target.partition(".")
        if not (sep and dot and dimension and setting):
            raise CommandError(f"--set {item!r}: expected DIMENSION.SETTING=VALUE")
        try:
            out.setdefault(dimension.strip(), {})[setting.strip()] = float(value)
        except ValueError:
            raise CommandError(f"--set {item!r}: {value!r} is not a number") from None
    return out
