"""manage.py import_clips MANIFEST: import clips from a JSONL or CSV manifest and print the report."""

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from annotation.models import ImportBatch, Round
from annotation.selectors.imports import batch_report
from annotation.services import ingest, rounds


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
                try:
                    found, created = rounds.create_round(
                        name=round, ratings_per_clip=ratings_per_clip
                    )
                except rounds.RoundSettingsError as exc:
                    raise CommandError(str(exc)) from exc
                if created:
                    self.stdout.write(f"created round '{round}'")
            round_id = found.pk
        try:
            batch = ingest.import_manifest_file(path=manifest, round_id=round_id)
        except ingest.ManifestError as exc:
            raise CommandError(str(exc)) from exc
        self._wait(batch, timeout)
        report = batch_report(ImportBatch.objects.get(pk=batch.pk))
        for row in report["rows"]:
            if row["status"] == "error":
                self.stdout.write(
                    self.style.ERROR(f"line {row['line']}: {row['video']}: {row['message']}")
                )
        self.stdout.write(self._summary(report))

    def _summary(self, report: dict) -> str:
        """One honest line: what finished, what is still waiting, and why it may be waiting."""
        states = report["states"]
        summary = f"import #{report['id']}: {states['ok']} imported, {states['error']} error(s)"
        if report["retried"]:
            summary += f" ({report['retried']} row(s) retried after a lost worker)"
        waiting = [
            f"{states[s]} {s.replace('_', ' ')}"
            for s in ("in_progress", "retrying", "stalled", "queued")
            if states[s]
        ]
        if not waiting:
            return self.style.SUCCESS(summary) if not states["error"] else summary
        summary += "; still waiting: " + ", ".join(waiting)
        if report["started"] == 0:
            summary += (
                " (no worker has picked up any row yet: is a Celery worker running on the "
                "'default' queue?)"
            )
        elif states["stalled"]:
            summary += " (a worker stopped heartbeating; the sweeper requeues its rows)"
        return summary

    def _wait(self, batch: ImportBatch, timeout: float) -> None:
        """Show a progress bar while the ingest tasks (eager or on a worker) finish."""
        deadline = time.monotonic() + timeout
        report = batch_report(batch)
        total = sum(report["states"].values()) - report["states"]["error"]
        done_before = report["states"]["error"]
        with tqdm(total=total, desc="ingest", unit="clip", disable=total == 0) as bar:
            while True:
                report = batch_report(ImportBatch.objects.get(pk=batch.pk))
                states = report["states"]
                bar.update(states["ok"] + states["error"] - done_before - bar.n)
                bar.set_postfix(
                    {k: v for k, v in states.items() if v and k not in {"ok", "error"}},
                    refresh=False,
                )
                if report["status"] == "done" or time.monotonic() > deadline:
                    return
                time.sleep(0.5)
