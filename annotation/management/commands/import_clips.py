"""manage.py import_clips MANIFEST: import clips from a JSONL or CSV manifest and print the report."""

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.models import ImportBatch, ImportRow, Round
from annotation.selectors.imports import batch_report
from annotation.services import ingest


class Command(BaseCommand):
    help = (
        "Import clips from a JSONL or CSV manifest (fields: video, prompt, first_frame, source, "
        "character_reference, round, seed). Relative paths are relative to the manifest."
    )

    def add_arguments(self, parser):
        parser.add_argument("manifest", type=Path)
        parser.add_argument("--round", help="round for rows that name none")
        parser.add_argument(
            "--create-round", action="store_true", help="create --round if it does not exist"
        )
        parser.add_argument(
            "--ratings-per-clip", type=int, default=3, help="for a round created here"
        )
        parser.add_argument(
            "--timeout", type=float, default=3600, help="seconds to wait for queued ingest tasks"
        )

    def handle(
        self,
        *args,
        manifest: Path,
        round: str | None,
        create_round: bool,
        ratings_per_clip: int,
        timeout: float,
        **options,
    ):
        if not manifest.exists():
            raise CommandError(f"manifest not found: {manifest}")
        round_id = None
        if round:
            found = Round.objects.filter(name=round).first()
            if found is None and not create_round:
                raise CommandError(f"unknown round '{round}' (add --create-round to create it)")
            if found is None:
                found = Round.objects.create(name=round, ratings_per_clip=ratings_per_clip)
                self.stdout.write(f"created round '{round}'")
            round_id = found.pk
        try:
            batch = ingest.import_manifest_file(path=manifest, round_id=round_id)
        except ingest.ManifestError as exc:
            raise CommandError(str(exc)) from exc
        self._wait(batch, timeout)
        report = batch_report(ImportBatch.objects.get(pk=batch.pk))
        for row in report["rows"]:
            if row["status"] == ImportRow.Status.ERROR:
                self.stdout.write(
                    self.style.ERROR(f"line {row['line']}: {row['video']}: {row['message']}")
                )
        counts = report["counts"]
        summary = f"import #{batch.pk}: {counts['ok']} imported, {counts['error']} error(s)"
        pending = counts["queued"] + counts["processing"]
        if pending:
            summary += f", {pending} still queued (is a Celery worker running?)"
        self.stdout.write(self.style.SUCCESS(summary) if not counts["error"] else summary)

    def _wait(self, batch: ImportBatch, timeout: float) -> None:
        """Show a progress bar while the ingest tasks (eager or on a worker) finish."""
        total = batch.rows.exclude(status=ImportRow.Status.ERROR).count()
        deadline = time.monotonic() + timeout
        with tqdm(total=total, desc="ingest", unit="clip", disable=total == 0) as bar:
            while True:
                done = (
                    batch.rows.filter(status__in=[ImportRow.Status.OK, ImportRow.Status.ERROR])
                    .exclude(status=ImportRow.Status.ERROR, clip__isnull=True, payload={})
                    .count()
                )
                bar.update(done - bar.n)
                if done >= total or time.monotonic() > deadline:
                    return
                time.sleep(0.5)
