"""manage.py recompute_labels: recompute every ClipLabel from the ratings and report differences."""

from django.core.management.base import BaseCommand

from annotation.services.labels import recompute_all_labels


class Command(BaseCommand):
    help = "Recompute all ClipLabels from the current ratings; report (and with --fix, repair) any difference."

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true", help="rewrite the labels that differ")

    def handle(self, *args, fix: bool, **options):
        report = recompute_all_labels(dry_run=not fix)
        if report.ok:
            self.stdout.write(
                self.style.SUCCESS(f"{report.clips} clip labels checked: all equal a recompute")
            )
            return
        shown = ", ".join(str(c) for c in report.differing[:20])
        more = "" if len(report.differing) <= 20 else f" (+{len(report.differing) - 20} more)"
        verb = "fixed" if fix else "differ (run with --fix to repair)"
        self.stdout.write(
            self.style.WARNING(
                f"{len(report.differing)} of {report.clips} labels {verb}: {shown}{more}"
            )
        )
        if not fix:
            raise SystemExit(1)
