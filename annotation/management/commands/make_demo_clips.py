"""manage.py make_demo_clips: render the demo clips and their manifest (see ``annotation.demo``)."""

from pathlib import Path

from django.core.management.base import BaseCommand

from annotation.demo import DEMO_ROUND, default_demo_dir, render_demo_set


class Command(BaseCommand):
    help = "Render the demo clips (real H.264 MP4s) and a manifest for import_clips."

    def add_arguments(self, parser):
        parser.add_argument("--out", type=Path, help="Folder (default: first import root/demo)")
        parser.add_argument("--round", default=DEMO_ROUND, help="Round name in the manifest")
        parser.add_argument("--force", action="store_true", help="Re-render existing files")

    def handle(self, *args, out: Path | None, round: str, force: bool, **options):
        manifest = render_demo_set(out or default_demo_dir(), round_name=round, force=force)
        count = sum(1 for _ in manifest.open(encoding="utf-8"))
        self.stdout.write(f"{count} demo clips; manifest: {manifest}")
