"""manage.py import_label_studio export.json --round NAME --mapping mapping.json: a Label Studio JSON
export of video tasks into a round: clips through the manifest ingest path, Rating annotations as
six-dimension ratings, Pairwise/Choices annotations as A/B judgements, annotators by e-mail
(created inactive). Idempotent; ``--wait`` waits for the clips' ingest and then adds the
annotations of the tasks that were waiting (``annotation/services/label_studio.py``)."""

import json
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from annotation.models import ImportBatch
from annotation.services.ingest import ManifestError
from annotation.services.label_studio import (
    MAPPING_EXAMPLE,
    LabelStudioError,
    import_label_studio,
    read_export,
    read_mapping,
)


class Command(BaseCommand):
    help = "Import a Label Studio JSON export (video tasks, ratings, pairwise) into a round."

    def add_arguments(self, parser):
        parser.add_argument("export", help="the export's JSON file (Label Studio: Export -> JSON)")
        parser.add_argument("--round", required=True, dest="round_name", help="round name")
        parser.add_argument(
            "--mapping",
            help="JSON file: task fields and control names -> ours (default: "
            + json.dumps(MAPPING_EXAMPLE)
            + ")",
        )
        parser.add_argument(
            "--wait", type=float, default=0, help="seconds to wait for ingest, then annotate"
        )

    def handle(self, *args, export: str, round_name: str, mapping: str | None, wait: float, **o):
        try:
            rules = read_mapping(Path(mapping).read_text()) if mapping else dict(MAPPING_EXAMPLE)
            tasks = read_export(Path(export).read_text(encoding="utf-8"))
            report = self._run(tasks, rules, round_name, Path(export).name)
            if wait and report.waiting and report.batch_id:
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline:
                    batch = ImportBatch.objects.get(pk=report.batch_id)
                    if batch.status == ImportBatch.Status.DONE:
                        break
                    time.sleep(1)
                report = self._run(tasks, rules, round_name, Path(export).name)
        except (OSError, LabelStudioError, ManifestError) as exc:
            raise CommandError(str(exc)) from None
        for task_id, message in report.errors:
            self.stdout.write(f"  task {task_id}: {message}")
        self.stdout.write(report.summary())

    def _run(self, tasks, rules, round_name, name):
        report = import_label_studio(
            tasks=tasks, mapping=rules, round_name=round_name, export_name=name
        )
        return report
