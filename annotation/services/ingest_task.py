"""Ingest, part two: the ``annotation.ingest_row`` task body for one queued import row.

The task claims the row (a duplicate delivery of a row in progress or done is a no-op), heartbeats
while it works, copies the source into a private folder and validates and hashes *that copy*,
writes every storage object atomically (``labelhub.storage``) after recording its name on the
row, then creates Condition + Clip and marks the row ok in one transaction. Any exception ends the
row as an error and removes what it wrote (``ingest_recovery``).
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation import media
from annotation.models import Character, Clip, Condition, ImportRow, Round
from annotation.services.ingest_recovery import (
    finish_batch_if_done,
    give_up,
    mark_failed,
)
from annotation.services.ingest_validation import (
    MAX_SOURCE_CHARS,
    RowError,
    image_limits,
    resolve_file,
    video_limits,
)
from labelhub import storage
from labelhub.heartbeat import Heartbeat, silent

log = logging.getLogger(__name__)


def _source_kind(source: str, checkpoint_id: int | None) -> str:
    if checkpoint_id or source.startswith("policy"):
        return Clip.SourceKind.POLICY
    if source in {"ground_truth", "gt", "real"}:
        return Clip.SourceKind.GROUND_TRUTH
    return Clip.SourceKind.EXTERNAL


def _claim(row_id: int) -> ImportRow | None:
    """Take a queued (or abandoned) row; None when this delivery must do nothing."""
    with transaction.atomic():
        row = ImportRow.objects.select_for_update().filter(pk=row_id).first()
        if row is None or row.status in {ImportRow.Status.OK, ImportRow.Status.ERROR}:
            return None  # gone, or done already (a duplicate delivery)
        if row.status == ImportRow.Status.PROCESSING:
            if not silent(row.heartbeat_at, settings.LABELHUB_IMPORT_STALE_SECONDS):
                return None  # a live worker holds it
            if row.attempts >= settings.LABELHUB_IMPORT_MAX_ATTEMPTS:
                give_up(row)
                return None
        now = timezone.now()
        row.status = ImportRow.Status.PROCESSING
        row.attempts += 1
        row.claimed_at = row.heartbeat_at = now
        row.save(update_fields=["status", "attempts", "claimed_at", "heartbeat_at"])
        return row


def ingest_import_row(row_id: int) -> None:
    """Probe, transcode and register one queued import row. Safe to deliver twice."""
    row = _claim(row_id)
    if row is None:
        return
    heartbeat = Heartbeat.on_rows(  # ffmpeg may run for minutes: show the sweeper we are alive
        ImportRow.objects.filter(
            pk=row.pk, status=ImportRow.Status.PROCESSING, claimed_at=row.claimed_at
        ),
        interval=settings.LABELHUB_IMPORT_HEARTBEAT_SECONDS,
        name=f"import-row-{row.pk}-heartbeat",
    )
    heartbeat.start()
    try:
        _ingest(row)
    except Exception as exc:  # whatever broke, this row ends as an error and the batch goes on
        if isinstance(exc, (media.MediaError, RowError)):
            message = str(exc)
        elif isinstance(exc, IntegrityError):
            message = "duplicate: this video was imported into the round concurrently"
        else:
            log.exception("import row %s failed", row_id)
            message = f"ingest failed: {type(exc).__name__}: {exc}"
        mark_failed(row_id, claimed_at=row.claimed_at, message=message)
        log.info("import row %s failed: %s", row_id, message)
    finally:
        heartbeat.stop()
    finish_batch_if_done(row.batch_id)


def _copy_limited(src: Path, dst: Path, *, max_bytes: int) -> None:
    """Copy ``src`` (at most ``max_bytes``): everything after this reads only the private copy."""
    with open(src, "rb") as inp, open(dst, "xb") as out:
        copied = 0
        while block := inp.read(1 << 20):
            copied += len(block)
            if copied > max_bytes:
                raise media.MediaError(f"file is over the limit of {max_bytes} bytes")
            out.write(block)


def _private_copy(value: str, dst: Path, *, trusted: bool, field: str, max_bytes: int) -> Path:
    if trusted:  # our own output, stored by the generation job
        if not default_storage.exists(value):
            raise RowError(f"'{field}' is not in storage: {value}")
        src = Path(storage.local_path(value))
    else:  # the file may have changed (or become a symlink) since the manifest was read
        src = resolve_file(value, field=field, base_dir=None)
    _copy_limited(src, dst, max_bytes=max_bytes)
    return dst


def _ingest(row: ImportRow) -> None:
    payload = row.payload
    trusted = bool(payload.get("trusted"))
    timeout = settings.LABELHUB_FFMPEG_TIMEOUT_SECONDS
    limits = video_limits()
    with tempfile.TemporaryDirectory(prefix="labelhub-ingest-") as tmp:
        tmpdir = Path(tmp)
        suffix = Path(payload["video"]).suffix.lower()
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix or "") else ".bin"
        src = _private_copy(
            payload["video"],
            tmpdir / f"original{suffix}",
            trusted=trusted,
            field="video",
            max_bytes=limits.max_bytes,
        )
        sha = media.sha256_file(src)  # the hash of the bytes validated and stored
        if Clip.objects.filter(round_id=payload["round_id"], original_sha256=sha).exists():
            raise RowError("duplicate: this video is already a clip in this round")
        probe = media.probe_video(src, limits)
        poster = tmpdir / "poster.jpg"
        if trusted and media.browser_ready(src, probe):
            # our generator's clip is already what the transcode makes: annotators see exactly
            # what was generated (no second lossy encode), and no ffmpeg child runs for it
            browser_mp4 = src
            media.trusted_poster(src, poster)
        else:
            browser_mp4 = tmpdir / "clip.mp4"
            media.transcode_for_browser(src, browser_mp4, fps=probe.fps, timeout=timeout)
            media.extract_frame(browser_mp4, poster, index=0, timeout=timeout)
        files = [(src, f"originals/{sha}{suffix}", sha)]
        files += [(browser_mp4, f"clips/{sha}.mp4", None), (poster, f"posters/{sha}.jpg", None)]

        condition_id = payload.get("condition_id")
        image_sha = character_sha = ""
        if condition_id is None:
            image = tmpdir / "condition.png"
            if payload["first_frame"]:
                _checked_image(payload["first_frame"], image, field="first_frame")
            else:  # the paper's condition: the third frame
                media.extract_frame(src, image, index=2, timeout=timeout)
            image_sha = media.sha256_file(image)
            files.append((image, f"conditions/{image_sha}.png", image_sha))
            if payload["character_reference"]:
                character = tmpdir / "character.png"
                _checked_image(
                    payload["character_reference"], character, field="character_reference"
                )
                character_sha = media.sha256_file(character)
                files.append((character, f"characters/{character_sha}.png", character_sha))

        names = {}
        for local, name, digest in files:
            _record_write(row, name)  # before writing: a crash mid-write still gets cleaned up
            names[name.split("/", 1)[0]] = storage.save_verified(local, name, sha256=digest).name

    with transaction.atomic():
        locked = ImportRow.objects.select_for_update().get(pk=row.pk)
        if locked.status != ImportRow.Status.PROCESSING or locked.claimed_at != row.claimed_at:
            return  # the sweeper gave this row to another worker: its result wins
        round_ = Round.objects.get(pk=payload["round_id"])
        if condition_id is not None:
            condition = Condition.objects.get(pk=condition_id)
        else:
            prompt = payload["prompt"]
            prompt_sha = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
            content_hash = hashlib.sha256(
                f"{image_sha}|{prompt_sha}|{character_sha}".encode()
            ).hexdigest()
            condition, _ = Condition.objects.get_or_create(
                content_hash=content_hash,
                defaults={
                    "image": names["conditions"],
                    "image_sha256": image_sha,
                    "prompt": prompt,
                    "prompt_sha256": prompt_sha,
                    "character_reference": names.get("characters", ""),
                    "character_id": _live_character(payload.get("character_id")),
                },
            )
            _link_character(condition, payload.get("character_id"))
        with transaction.atomic():  # a savepoint: a concurrent duplicate is this row's error
            clip = Clip.objects.create(
                round=round_,
                condition=condition,
                source_kind=(
                    Clip.SourceKind.POLICY
                    if trusted
                    else _source_kind(payload["source"], payload.get("policy_checkpoint_id"))
                ),
                source_name=payload["source"][:MAX_SOURCE_CHARS],
                seed=payload["seed"],
                original=names["originals"],
                original_sha256=sha,
                video=names["clips"],
                poster=names["posters"],
                frames=probe.frames,
                fps=probe.fps,
                width=probe.width,
                height=probe.height,
                duration=probe.duration,
                status=Clip.Status.READY,
                target_ratings=round_.ratings_per_clip,
            )
        locked.status = ImportRow.Status.OK
        locked.clip = clip
        locked.message = ""
        locked.written = []  # everything it wrote is referenced now
        locked.save(update_fields=["status", "clip", "message", "written"])
    if trusted:
        # The generation job's hand-over copy has done its work (the clip has its own under
        # originals/): it goes now, not when the generation run ends days later.
        storage.delete(payload["video"])


def _live_character(character_id: int | None) -> int | None:
    if character_id is not None and not Character.objects.filter(pk=character_id).exists():
        raise RowError(f"character {character_id} was deleted after the manifest was read")
    return character_id


def _link_character(condition: Condition, character_id: int | None) -> None:
    """An existing condition (same image, prompt and reference) gets the row's character when it
    has none; naming a different one than it is linked to is this row's error."""
    if character_id is None or condition.character_id == character_id:
        return
    if condition.character_id is not None:
        raise RowError(
            f"condition {condition.pk} is already linked to character "
            f"'{condition.character.name}'; this row names another"
        )
    condition.character_id = _live_character(character_id)
    condition.save(update_fields=["character"])


def _checked_image(value: str, dst: Path, *, field: str) -> None:
    """A person's image (``value``, a path under the import roots) copied privately, checked
    and re-encoded as PNG at ``dst``."""
    raw = _private_copy(
        value,
        dst.with_suffix(".in"),
        trusted=False,
        field=field,
        max_bytes=settings.LABELHUB_MAX_IMAGE_BYTES,
    )
    try:
        media.normalise_image(raw, dst, image_limits())
    except media.MediaError as exc:
        raise RowError(f"'{field}': {exc}") from exc


def _record_write(row: ImportRow, name: str) -> None:
    with transaction.atomic():
        locked = ImportRow.objects.select_for_update().get(pk=row.pk)
        if name not in locked.written:
            locked.written = [*locked.written, name]
            locked.save(update_fields=["written"])
