"""Build an export snapshot from the shell, with a progress bar (same service as the web)."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.models import ClipLabel
from annotation.services.exports import FORMATS, create_snapshot


class Command(BaseCommand):
    help = "Export ClipLabels as an immutable, hashed snapshot (JSONL, CSV, Parquet + card)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--round",
            dest="rounds",
            type=int,
            action="append",
            help="round id (repeat for several; default: all rounds)",
        )
        parser.add_argument("--test-fraction", type=float, default=0.1)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--include-ratings",
            action="store_true",
            help="also write raw ratings with pseudonymised annotators",
        )

    def handle(self, *args, **options):
        rounds = options["rounds"]
        expected = ClipLabel.objects.filter(
            **({"clip__round_id__in": rounds} if rounds else {})
        ).count()
        bar = tqdm(total=expected * len(FORMATS), unit="row", desc="export", disable=None)

        def progress(_file: str, rows: int) -> None:
            bar.update(rows)

        try:
            snapshot = create_snapshot(
                round_ids=rounds,
                test_fraction=options["test_fraction"],
                seed=options["seed"],
                include_ratings=options["include_ratings"],
                progress=progress,
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        counts = snapshot.row_counts
        self.stdout.write(
            f"snapshot {snapshot.pk}: {counts['clips']} clips "
            f"({counts['train']} train / {counts['test']} test), hash {snapshot.content_hash}"
        )
        for kind, entry in sorted(snapshot.files.items()):
            self.stdout.write(f"  {kind}: {entry['name']} ({entry['bytes']} bytes)")
