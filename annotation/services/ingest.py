"""Ingest: manifest rows -> validated import rows -> (Celery, default queue) probed, transcoded clips.

Two ways in:
- ``import_rows`` / ``import_manifest_file``: a person's manifest. Every field's type and range is
  checked up front and every file must lie under the import roots; a bad value is that row's
  error in the batch report, never an error for the whole manifest.
- ``import_generated_clips``: the platform's own generated candidates (trusted paths, an existing
  Condition); still probed, transcoded and postered like any clip.

Each queued row becomes an ``annotation.ingest_row`` task. The task claims the row (a duplicate
delivery of a row in progress or done is a no-op), heartbeats while it works, copies the source
into a private folder and validates and hashes *that copy*, writes every storage object atomically
(``labelhub.storage``) after recording its name on the row, then creates Condition + Clip and
marks the row ok in one transaction. Any exception ends the row as an error and removes what it
wrote; ``sweep_stuck_imports`` (beat) requeues or fails rows whose worker died.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from annotation import media
from annotation.models import (
    Character,
    CharacterImage,
    Clip,
    Condition,
    ImportBatch,
    ImportRow,
    Round,
)
from labelhub import storage
from labelhub.heartbeat import Heartbeat
from labelhub.queue import enqueue

log = logging.getLogger(__name__)
# Where generation jobs store candidate videos for import_generated_clips.
GENERATED_FOLDER = "generated"

INGEST_TASK = "annotation.ingest_row"
REQUIRED_FIELDS = ("video", "prompt")
OPTIONAL_FIELDS = (
    "first_frame",
    "source",
    "character_reference",
    "character",
    "round",
    "seed",
    "policy_checkpoint_id",
)
KNOWN_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
EXTERNAL_SOURCES_DEFAULT = "ground_truth"
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
MAX_PATH_CHARS = 1000
MAX_SOURCE_CHARS = 100
MAX_ROUND_CHARS = 200
MAX_CHARACTER_CHARS = 100  # Character.name
_INTEGER = re.compile(r"[+-]?[0-9]{1,30}")  # ASCII digits only: '²'.isdigit() is True

# Fields of any size: a huge CSV cell is that row's error (length limits below), not a crash.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class ManifestError(ValueError):
    """The manifest as a whole cannot be read (not one bad row: those go in the report)."""


class RowError(Exception):
    """One row is bad; the message goes in the batch report."""


def _clean(text: str, limit: int = 2000) -> str:
    """Text safe for a Postgres text column and a report line: no NUL bytes, bounded length."""
    text = str(text).replace("\x00", "\\x00")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_manifest(text: str, *, name: str) -> list[dict]:
    """Rows of a JSONL or CSV manifest (chosen by ``name``'s suffix), as dicts."""
    if name.lower().endswith(".csv"):
        try:
            reader = csv.DictReader(io.StringIO(text))
            if not reader.fieldnames:
                raise ManifestError("the CSV manifest has no header row")
            rows = []
            for row in reader:
                if None in row:
                    rows.append({"__error__": "more values than header columns"})
                    continue
                rows.append({k.strip(): (v or "").strip() for k, v in row.items() if k})
            return rows
        except csv.Error as exc:
            raise ManifestError(f"the CSV manifest cannot be read: {exc}") from exc
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            row = {"__error__": f"line {number} is not valid JSON: {exc.msg}"}
        except (ValueError, RecursionError) as exc:  # e.g. a 5000-digit number, deep nesting
            row = {"__error__": f"line {number} cannot be read: {_clean(exc, 200)}"}
        if not isinstance(row, dict):
            row = {"__error__": f"line {number} is not a JSON object"}
        rows.append(row)
    return rows


def allowed_roots() -> list[Path]:
    return [*settings.LABELHUB_IMPORT_ROOTS, Path(settings.LABELHUB_ARTIFACTS_ROOT).resolve()]


def video_limits() -> media.VideoLimits:
    return media.VideoLimits(
        max_seconds=settings.LABELHUB_MAX_CLIP_SECONDS,
        max_frames=settings.LABELHUB_MAX_CLIP_FRAMES,
        max_pixels=settings.LABELHUB_MAX_CLIP_PIXELS,
        min_side=settings.LABELHUB_MIN_CLIP_SIDE,
        max_bytes=settings.LABELHUB_MAX_CLIP_BYTES,
        timeout_seconds=settings.LABELHUB_FFMPEG_TIMEOUT_SECONDS,
    )


def image_limits() -> media.ImageLimits:
    return media.ImageLimits(
        max_pixels=settings.LABELHUB_MAX_IMAGE_PIXELS, max_bytes=settings.LABELHUB_MAX_IMAGE_BYTES
    )


# --- field validation ---------------------------------------------------------------------------


def _text_field(row: dict, field: str, *, limit: int, required: bool = False) -> str:
    value = row.get(field)
    if value is None or value == "":
        if required:
            raise RowError(f"missing required field '{field}'")
        return ""
    if not isinstance(value, str):
        raise RowError(f"'{field}' must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise RowError(f"'{field}' contains a NUL byte")
    value = value.strip()
    if required and not value:
        raise RowError(f"missing required field '{field}'")
    if len(value) > limit:
        raise RowError(f"'{field}' is {len(value)} characters, over the limit of {limit}")
    return value


def _int_field(value, field: str, *, low: int = BIGINT_MIN, high: int = BIGINT_MAX) -> int | None:
    """An integer given as a JSON number or a string of ASCII digits, within [low, high]."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise RowError(f"'{field}' must be an integer, got {_clean(repr(value), 80)}")
    if isinstance(value, str):
        if not _INTEGER.fullmatch(value.strip()):
            raise RowError(f"'{field}' must be an integer, got {_clean(repr(value), 80)}")
        value = int(value.strip())
    if not low <= value <= high:
        raise RowError(f"'{field}' {value} is out of range ({low} to {high})")
    return value


def _resolve_file(value: str, *, field: str, base_dir: Path | None) -> Path:
    if not value:
        raise RowError(f"'{field}' is empty")
    path = Path(value)
    if not path.is_absolute():
        if base_dir is None:
            raise RowError(f"'{field}' must be an absolute path: {value}")
        path = base_dir / path
    try:
        resolved = path.resolve()
        if not any(resolved.is_relative_to(root) for root in allowed_roots()):
            raise RowError(f"'{field}' {value} is outside the allowed import roots")
        if not resolved.exists():
            raise RowError(f"'{field}' file not found: {value}")
        if not resolved.is_file():
            raise RowError(f"'{field}' is not a file: {value}")
        size = resolved.stat().st_size
    except OSError as exc:
        raise RowError(f"'{field}' cannot be read: {exc.strerror or exc}") from exc
    if size == 0:
        raise RowError(f"'{field}' file is empty (0 bytes): {value}")
    return resolved


def _validate_row(
    row: dict,
    *,
    base_dir: Path | None,
    default_round: Round | None,
    rounds: dict[str, Round | None],
    seen: dict[tuple[int, str], int],
    line: int,
) -> dict:
    if "__error__" in row:
        raise RowError(row["__error__"])
    unknown = sorted(str(k) for k in set(row) - set(KNOWN_FIELDS))
    if unknown:
        raise RowError(
            f"unknown field(s) {_clean(', '.join(unknown), 300)}; expected {', '.join(KNOWN_FIELDS)}"
        )
    video_value = _text_field(row, "video", limit=MAX_PATH_CHARS, required=True)
    prompt = _text_field(row, "prompt", limit=settings.LABELHUB_MAX_PROMPT_CHARS, required=True)
    first_frame = _text_field(row, "first_frame", limit=MAX_PATH_CHARS)
    character = _text_field(row, "character_reference", limit=MAX_PATH_CHARS)
    # A gallery character by name (case-insensitive). An unknown name is this row's error, not a
    # new character: a typo must not split one character's gallery in two.
    character_name = _text_field(row, "character", limit=MAX_CHARACTER_CHARS)
    character_id = None
    if character_name:
        character_id = (
            Character.objects.filter(name__iexact=character_name)
            .values_list("pk", flat=True)
            .first()
        )
        if character_id is None:
            raise RowError(
                f"unknown character '{character_name}' (create it on the Characters page first)"
            )
    source = _text_field(row, "source", limit=MAX_SOURCE_CHARS) or EXTERNAL_SOURCES_DEFAULT
    seed = _int_field(row.get("seed"), "seed")
    checkpoint_id = _int_field(row.get("policy_checkpoint_id"), "policy_checkpoint_id", low=1)
    round_value = row.get("round")
    if isinstance(round_value, int) and not isinstance(round_value, bool):
        round_value = str(round_value)
    round_name = _text_field({"round": round_value}, "round", limit=MAX_ROUND_CHARS)
    if round_name:
        if round_name not in rounds:
            rounds[round_name] = Round.objects.filter(name=round_name).first()
        round_ = rounds[round_name]
        if round_ is None:
            raise RowError(f"unknown round '{round_name}'")
    elif default_round is not None:
        round_ = default_round
    else:
        raise RowError("no round given (set 'round' in the row or choose a round for the import)")
    if round_.status != Round.Status.OPEN:
        raise RowError(f"round '{round_.name}' is closed")
    video = _resolve_file(video_value, field="video", base_dir=base_dir)
    if video.stat().st_size > settings.LABELHUB_MAX_CLIP_BYTES:
        raise RowError(
            f"'video' is {video.stat().st_size} bytes, over the limit of "
            f"{settings.LABELHUB_MAX_CLIP_BYTES}"
        )
    sha = media.sha256_file(video)
    key = (round_.pk, sha)
    if key in seen:
        raise RowError(f"duplicate of line {seen[key]} in this manifest (same video content)")
    existing = (
        Clip.objects.filter(round=round_, original_sha256=sha).values_list("pk", flat=True).first()
    )
    if existing:
        raise RowError(f"duplicate: this video is already clip {existing} in round '{round_.name}'")
    seen[key] = line
    return {
        "video": str(video),
        "video_sha256": sha,
        "prompt": prompt,
        "first_frame": (
            str(_resolve_file(first_frame, field="first_frame", base_dir=base_dir))
            if first_frame
            else ""
        ),
        "character_reference": (
            str(_resolve_file(character, field="character_reference", base_dir=base_dir))
            if character
            else ""
        ),
        "character_id": character_id,
        "round_id": round_.pk,
        "source": source,
        "seed": seed,
        "policy_checkpoint_id": checkpoint_id,
    }


def _report_row(batch: ImportBatch, line: int, row, validate) -> ImportRow:
    video = row.get("video") if isinstance(row, dict) else None
    video_path = _clean(video if isinstance(video, str) else "", MAX_PATH_CHARS)
    try:
        payload = validate(row, line)
    except RowError as exc:
        return ImportRow(
            batch=batch,
            line=line,
            video_path=video_path,
            status=ImportRow.Status.ERROR,
            message=_clean(exc),
        )
    except Exception as exc:  # a row must never break the manifest: it is that row's error
        log.exception("validating line %s of import %s failed", line, batch.pk)
        return ImportRow(
            batch=batch,
            line=line,
            video_path=video_path,
            status=ImportRow.Status.ERROR,
            message=_clean(f"this row could not be validated: {type(exc).__name__}: {exc}", 500),
        )
    return ImportRow(
        batch=batch,
        line=line,
        video_path=video_path,
        status=ImportRow.Status.QUEUED,
        payload=payload,
        enqueued_at=timezone.now(),
    )


def _create_batch(*, manifest_name: str, created_by, rows: list, validate) -> ImportBatch:
    with transaction.atomic():
        batch = ImportBatch.objects.create(
            created_by=created_by, manifest_name=_clean(manifest_name, 300)
        )
        report = [_report_row(batch, line, row, validate) for line, row in enumerate(rows, 1)]
        ImportRow.objects.bulk_create(report)
        queued = [r.pk for r in report if r.status == ImportRow.Status.QUEUED]
        if not queued:
            batch.status = ImportBatch.Status.DONE
            batch.finished_at = timezone.now()
            batch.save(update_fields=["status", "finished_at"])
        for row_id in queued:
            enqueue(INGEST_TASK, row_id=row_id)
    return batch


def import_rows(
    *,
    rows: list,
    manifest_name: str,
    created_by=None,
    base_dir: Path | None = None,
    round_id: int | None = None,
) -> ImportBatch:
    """Validate manifest rows, record the report, and enqueue one ingest task per good row."""
    default_round = None
    if round_id is not None:
        default_round = Round.objects.filter(pk=round_id).first()
        if default_round is None:
            raise ManifestError(f"round {round_id} does not exist")
    if not isinstance(rows, list):
        raise ManifestError("the manifest must be a list of rows")
    rounds: dict[str, Round | None] = {}
    seen: dict[tuple[int, str], int] = {}

    def validate(row, line: int) -> dict:
        if not isinstance(row, dict):
            raise RowError("not an object with fields")
        return _validate_row(
            row,
            base_dir=base_dir,
            default_round=default_round,
            rounds=rounds,
            seen=seen,
            line=line,
        )

    return _create_batch(
        manifest_name=manifest_name, created_by=created_by, rows=rows, validate=validate
    )


def import_manifest_file(
    *, path: Path, created_by=None, round_id: int | None = None
) -> ImportBatch:
    """Read a manifest from disk; relative video paths are relative to the manifest's folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"the manifest is not UTF-8 text: {exc.reason}") from exc
    rows = parse_manifest(text, name=path.name)
    return import_rows(
        rows=rows,
        manifest_name=path.name,
        created_by=created_by,
        base_dir=path.resolve().parent,
        round_id=round_id,
    )


def import_generated_clips(
    *, round_id: int, rows: list[dict], created_by=None, manifest_name: str
) -> ImportBatch:
    """Ingest the platform's own generated candidates into ``round_id`` (a trusted entry point).

    Each row is ``{"video": the storage name under generated/ our generation job stored,
    "condition_id": an existing Condition's pk, "seed": int, "source": str}``. Names skip the
    import-root check (no person named them) but every video is still probed, transcoded and
    postered; the clip is linked to the existing Condition, whose images are not read again.
    The video is read through storage, so the generating GPU host and the ingesting worker share
    only the bucket (or media root).
    """
    round_ = Round.objects.filter(pk=round_id).first()
    if round_ is None:
        raise ManifestError(f"round {round_id} does not exist")

    def validate(row, line: int) -> dict:
        if not isinstance(row, dict):
            raise RowError("not an object with fields")
        unknown = sorted(str(k) for k in set(row) - {"video", "condition_id", "seed", "source"})
        if unknown:
            raise RowError(f"unknown field(s) {_clean(', '.join(unknown), 300)}")
        video = _text_field(row, "video", limit=1000, required=True)
        if not video.startswith(GENERATED_FOLDER + "/") or ".." in video.split("/"):
            raise RowError(f"'video' must be a storage name under {GENERATED_FOLDER}/: {video}")
        if not default_storage.exists(video):
            raise RowError(f"'video' is not in storage: {video}")
        condition_id = _int_field(row.get("condition_id"), "condition_id", low=1)
        if condition_id is None or not Condition.objects.filter(pk=condition_id).exists():
            raise RowError(f"condition {condition_id} does not exist")
        return {
            "trusted": True,
            "video": video,
            "video_sha256": "",
            "condition_id": condition_id,
            "round_id": round_.pk,
            "source": _text_field(row, "source", limit=MAX_SOURCE_CHARS) or "generated",
            "seed": _int_field(row.get("seed"), "seed"),
        }

    return _create_batch(
        manifest_name=manifest_name, created_by=created_by, rows=rows, validate=validate
    )


# --- the ingest task ----------------------------------------------------------------------------


def _source_kind(source: str, checkpoint_id: int | None) -> str:
    if checkpoint_id or source.startswith("policy"):
        return Clip.SourceKind.POLICY
    if source in {"ground_truth", "gt", "real"}:
        return Clip.SourceKind.GROUND_TRUTH
    return Clip.SourceKind.EXTERNAL


def _stale_before(now=None):
    return (now or timezone.now()) - timedelta(seconds=settings.LABELHUB_IMPORT_STALE_SECONDS)


def _claim(row_id: int) -> ImportRow | None:
    """Take a queued (or abandoned) row; None when this delivery must do nothing."""
    with transaction.atomic():
        row = ImportRow.objects.select_for_update().filter(pk=row_id).first()
        if row is None or row.status in {ImportRow.Status.OK, ImportRow.Status.ERROR}:
            return None  # gone, or done already (a duplicate delivery)
        if row.status == ImportRow.Status.PROCESSING:
            if row.heartbeat_at and row.heartbeat_at >= _stale_before():
                return None  # a live worker holds it
            if row.attempts >= settings.LABELHUB_IMPORT_MAX_ATTEMPTS:
                _give_up(row)
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
    heartbeat = Heartbeat(  # ffmpeg may run for minutes: show the sweeper this worker is alive
        lambda: ImportRow.objects.filter(
            pk=row.pk, status=ImportRow.Status.PROCESSING, claimed_at=row.claimed_at
        ).update(heartbeat_at=timezone.now()),
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
        _fail_row(row_id, claimed_at=row.claimed_at, message=message)
        log.info("import row %s failed: %s", row_id, message)
    finally:
        heartbeat.stop()
    _finish_batch_if_done(row.batch_id)


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
        src = _resolve_file(value, field=field, base_dir=None)
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
        browser_mp4 = tmpdir / "clip.mp4"
        media.transcode_for_browser(src, browser_mp4, fps=probe.fps, timeout=timeout)
        poster = tmpdir / "poster.jpg"
        media.extract_frame(browser_mp4, poster, index=0, timeout=timeout)
        files = [(src, f"originals/{sha}{suffix}", sha)]
        files += [(browser_mp4, f"clips/{sha}.mp4", None), (poster, f"posters/{sha}.jpg", None)]

        condition_id = payload.get("condition_id")
        image_sha = character_sha = ""
        if condition_id is None:
            image = tmpdir / "condition.png"
            if payload["first_frame"]:
                raw = _private_copy(
                    payload["first_frame"],
                    tmpdir / "first_frame.in",
                    trusted=False,
                    field="first_frame",
                    max_bytes=settings.LABELHUB_MAX_IMAGE_BYTES,
                )
                _checked_image(raw, image, "first_frame")
            else:  # the paper's condition: the third frame
                media.extract_frame(src, image, index=2, timeout=timeout)
            image_sha = media.sha256_file(image)
            files.append((image, f"conditions/{image_sha}.png", image_sha))
            if payload["character_reference"]:
                raw = _private_copy(
                    payload["character_reference"],
                    tmpdir / "character.in",
                    trusted=False,
                    field="character_reference",
                    max_bytes=settings.LABELHUB_MAX_IMAGE_BYTES,
                )
                character = tmpdir / "character.png"
                _checked_image(raw, character, "character_reference")
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


def _checked_image(raw: Path, dst: Path, field: str) -> None:
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


def _fail_row(row_id: int, *, claimed_at, message: str) -> None:
    """End a row this worker holds as an error and remove what it wrote."""
    with transaction.atomic():
        row = ImportRow.objects.select_for_update().filter(pk=row_id).first()
        if row is None or row.status != ImportRow.Status.PROCESSING:
            return
        if claimed_at is not None and row.claimed_at != claimed_at:
            return  # another worker holds it now
        _end_as_error(row, message)


def _give_up(row: ImportRow) -> None:
    _end_as_error(
        row,
        f"the worker ingesting this row was lost {row.attempts} time(s); giving up "
        "(check the file, the worker's memory and ffmpeg)",
    )


def _end_as_error(row: ImportRow, message: str) -> None:
    """Mark a locked row as an error and delete the objects it wrote that nothing references."""
    written = list(row.written)
    row.status = ImportRow.Status.ERROR
    row.message = _clean(message)
    row.written = []
    row.save(update_fields=["status", "message", "written"])
    for name in written:
        _delete_if_unreferenced(name, except_row_id=row.pk)


def referenced_names() -> set[str]:
    """Every storage name a clip, a condition or an in-flight import row points at."""
    names: set[str] = set()
    for fields in Clip.objects.values_list("original", "video", "poster").iterator():
        names.update(f for f in fields if f)
    for fields in Condition.objects.values_list("image", "character_reference").iterator():
        names.update(f for f in fields if f)
    names.update(CharacterImage.objects.values_list("image", flat=True).iterator())
    in_flight = ImportRow.objects.filter(
        status__in=[ImportRow.Status.QUEUED, ImportRow.Status.PROCESSING]
    ).values_list("written", flat=True)
    for written in in_flight.iterator():
        names.update(written or [])
    return names


def _delete_if_unreferenced(name: str, *, except_row_id: int | None = None) -> None:
    """Remove a file a row wrote, unless a clip, a condition or another live row points at it."""
    referenced = (
        Clip.objects.filter(Q(original=name) | Q(video=name) | Q(poster=name)).exists()
        or Condition.objects.filter(Q(image=name) | Q(character_reference=name)).exists()
        or CharacterImage.objects.filter(image=name).exists()
        or ImportRow.objects.filter(
            status__in=[ImportRow.Status.QUEUED, ImportRow.Status.PROCESSING],
            written__contains=[name],
        )
        .exclude(pk=except_row_id)
        .exists()
    )
    if not referenced:
        try:
            storage.delete(name)
        except OSError:
            log.warning("could not delete %s; storage_gc will", name)


def _finish_batch_if_done(batch_id: int) -> bool:
    """Mark a running batch done once none of its rows is queued or processing."""
    pending = ImportRow.objects.filter(
        batch_id=batch_id, status__in=[ImportRow.Status.QUEUED, ImportRow.Status.PROCESSING]
    ).exists()
    if pending:
        return False
    return bool(
        ImportBatch.objects.filter(pk=batch_id, status=ImportBatch.Status.RUNNING).update(
            status=ImportBatch.Status.DONE, finished_at=timezone.now()
        )
    )


# --- recovery -----------------------------------------------------------------------------------


def sweep_stuck_imports(*, now=None) -> dict[str, int]:
    """Requeue (or, after too many attempts, fail) rows whose worker died; resend lost messages.

    Run by beat every LABELHUB_IMPORT_SWEEP_SECONDS. A processing row whose heartbeat is older
    than LABELHUB_IMPORT_STALE_SECONDS lost its worker; a queued row not picked up within
    LABELHUB_IMPORT_RESEND_SECONDS may have lost its message (a Redis restart), so it is sent
    again. Duplicate deliveries are no-ops, so resending is always safe.
    """
    now = now or timezone.now()
    counts = {"requeued": 0, "failed": 0, "resent": 0, "batches_finished": 0}
    stale = Q(heartbeat_at__lt=_stale_before(now)) | Q(heartbeat_at__isnull=True)
    with transaction.atomic():
        rows = list(
            ImportRow.objects.select_for_update(skip_locked=True).filter(
                stale, status=ImportRow.Status.PROCESSING
            )
        )
        for row in rows:
            if row.attempts >= settings.LABELHUB_IMPORT_MAX_ATTEMPTS:
                _give_up(row)
                counts["failed"] += 1
                continue
            row.status = ImportRow.Status.QUEUED
            row.message = f"worker lost during attempt {row.attempts}; requeued"
            row.enqueued_at = now
            row.save(update_fields=["status", "message", "enqueued_at"])
            enqueue(INGEST_TASK, row_id=row.pk)
            counts["requeued"] += 1
        resend_before = now - timedelta(seconds=settings.LABELHUB_IMPORT_RESEND_SECONDS)
        waiting = list(
            ImportRow.objects.select_for_update(skip_locked=True).filter(
                Q(enqueued_at__lt=resend_before) | Q(enqueued_at__isnull=True),
                status=ImportRow.Status.QUEUED,
            )
        )
        for row in waiting:
            row.enqueued_at = now
            row.save(update_fields=["enqueued_at"])
            enqueue(INGEST_TASK, row_id=row.pk)
            counts["resent"] += 1
    running = ImportBatch.objects.filter(status=ImportBatch.Status.RUNNING)
    for batch_id in running.values_list("pk", flat=True):
        counts["batches_finished"] += _finish_batch_if_done(batch_id)
    if any(counts.values()):
        log.info("sweep_stuck_imports: %s", counts)
    return counts


def clean_unreferenced(*, grace: timedelta, dry_run: bool) -> list[str]:
    """Storage objects under the ingest folders that nothing references, older than ``grace``.

    Also leftovers of interrupted local writes (``.tmp/``). Deleted unless ``dry_run``.
    """
    cutoff = timezone.now() - grace
    referenced = referenced_names()
    objects = storage.list_objects((*storage.INGEST_FOLDERS, storage.TEMP_FOLDER))
    orphans = [
        o.name
        for o in objects
        if o.name not in referenced and (o.modified is None or o.modified <= cutoff)
    ]
    if not dry_run:
        for name in orphans:
            storage.delete(name)
    return sorted(orphans)
