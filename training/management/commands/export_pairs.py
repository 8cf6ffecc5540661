"""manage.py export_pairs --round N --format anisora|jsonl|videoalign --out DIR: a round's preference
pairs for a trainer outside LabelHub (``training/pair_export.py`` documents each format)."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from training.models import PreferencePair
from training.pair_export import FORMATS, PairExportError, export_pairs


class Command(BaseCommand):
    help = (
        "Write a round's preference pairs: anisora (Index-AniSora's RL trainer: pairs.json + "
        "torch-saved VAE latents), jsonl (ours), videoalign (human A/B judgements as CSV, ties kept)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--round", type=int, required=True, dest="round_id")
        parser.add_argument("--format", choices=FORMATS, required=True, dest="fmt")
        parser.add_argument("--out", required=True, help="folder to write into (created)")
        parser.add_argument("--origin", choices=PreferencePair.Origin.values)
        parser.add_argument("--reward-model", type=int, dest="reward_model_id")
        parser.add_argument(
            "--relative-paths",
            action="store_true",
            help="anisora: latent paths relative to --out (run the trainer from there)",
        )

    def handle(self, *args, round_id, fmt, out, origin, reward_model_id, relative_paths, **opts):
        try:
            result = export_pairs(
                round_id=round_id,
                fmt=fmt,
                out_dir=Path(out),
                origin=origin,
                reward_model_id=reward_model_id,
                preset=settings.LABELHUB_GENERATOR_PRESET,
                model_path=settings.LABELHUB_COGVIDEOX_PATH,
                relative_paths=relative_paths,
            )
        except PairExportError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{result.rows} pair(s) of round {round_id} as {fmt}: {result.path}")
