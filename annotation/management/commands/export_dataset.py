"""manage.py export_dataset --snapshot N: a ready snapshot as a self-contained dataset folder
(videos, condition images, character references beside metadata.jsonl, train/test folders that
Hugging Face ``datasets`` loads offline as a video folder), built here by the same service as the
exports page; ``--archive PATH`` also writes it as one tar."""

from pathlib import Path

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError

from annotation.services.dataset_folders import (
    DatasetFolderError,
    build_dataset_folder,
    request_dataset_folder,
    write_archive,
)
from labelhub.storage import on_local_disk


class Command(BaseCommand):
    help = "Build a snapshot's dataset folder (videos + labels, loadable by `datasets` offline)."

    def add_arguments(self, parser):
        parser.add_argument("--snapshot", type=int, required=True, help="a ready export snapshot")
        parser.add_argument(
            "--originals", action="store_true", help="also the uploaded originals of the clips"
        )
        parser.add_argument("--archive", help="write the folder as one tar to this path")

    def handle(self, *args, snapshot: int, originals: bool, archive: str | None, **options):
        try:
            folder = request_dataset_folder(
                snapshot_id=snapshot, with_originals=originals, send=False
            )
            folder = build_dataset_folder(folder_id=folder.pk, progress=self.stdout.write)
        except DatasetFolderError as exc:
            raise CommandError(str(exc)) from None
        except OSError as exc:
            raise CommandError(f"dataset folder failed, nothing of it kept: {exc}") from None
        if folder.status != folder.Status.READY:
            raise CommandError(f"{folder} is being built by a worker; try again when it is ready")
        where = default_storage.path(folder.prefix) if on_local_disk() else folder.prefix
        self.stdout.write(
            f"dataset folder of snapshot {snapshot}: {folder.files} files, {folder.bytes} bytes "
            f"in {where} (tar: {folder.archive_bytes} bytes)"
        )
        if archive:
            with Path(archive).open("wb") as out:
                size = write_archive(folder.pk, out)
            self.stdout.write(f"archive: {archive} ({size} bytes)")
