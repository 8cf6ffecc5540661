"""manage.py storage_gc [--dry-run] [--grace-minutes N]: remove ingest media nothing references.

Looks under originals/, clips/, posters/, conditions/, characters/ (and .tmp/ leftovers of
interrupted local writes) on the default storage, local disk or S3. An object is kept while a
clip, a condition or an in-flight import row names it, and while it is younger than the grace
period (a row may be writing it right now).
"""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError

from annotation.services.ingest import clean_unreferenced


class Command(BaseCommand):
    help = (
        "List (--dry-run) or remove stored media that no clip, condition or import row references."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="list only, delete nothing")
        parser.add_argument(
            "--grace-minutes",
            type=float,
            default=60,
            help="keep objects younger than this (default 60)",
        )

    def handle(self, *args, dry_run: bool, grace_minutes: float, **options):
        if grace_minutes < 0:
            raise CommandError("--grace-minutes must be 0 or more")
        orphans = clean_unreferenced(grace=timedelta(minutes=grace_minutes), dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        for name in orphans:
            self.stdout.write(f"{verb} {name}")
        self.stdout.write(f"{len(orphans)} unreferenced object(s) {verb}")
