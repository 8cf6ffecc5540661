"""Ingest: manifest rows -> validated import rows -> (Celery, default queue) probed, transcoded clips.

Validation that needs no decoding happens at once and every bad row gets a clear line in the
batch report. Each good row becomes an ``annotation.ingest_row`` task: probe, transcode, poster,
third frame, then Condition + Clip created in one transaction. A clip row exists only once all its
files do, and a failure removes whatever the row wrote, so nothing half-written stays behind.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from annotation import media
from annotation.models import Clip, Condition, ImportBatch, ImportRow, Round

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("video", "prompt")
OPTIONAL_FIELDS = (
    "first_frame",
    "source",
    "character_reference",
    "round",
    "seed",
    "policy_checkpoint_id",
)
KNOWN_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
EXTERNAL_SOURCES_DEFAULT = "ground_truth"


class ManifestError(ValueError):
    """The manifest as a whole cannot be read (not one bad row: those go in the report)."""


def parse_manifest(text: str, *, name: str) -> list[dict]:
    """Rows of a JSONL or CSV manifest (chosen by ``name``'s suffix), as dicts of strings."""
    if name.lower().endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames:
            raise ManifestError("the CSV manifest has no header row")
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            row = {"__error__": f"line {number} is not valid JSON: {exc.msg}"}
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
    )


class RowError(Exception):
    pass


def _resolve_file(value: str, *, field: str, base_dir: Path | None) -> Path:
    if not value:
        raise RowError(f"'{field}' is empty")
    path = Path(value)
    if not path.is_absolute():
        if base_dir is None:
            raise RowError(f"'{field}' must be an absolute path: {value}")
        path = base_dir / path
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in allowed_roots()):
        raise RowError(f"'{field}' {value} is outside the allowed import roots")
    if not resolved.exists():
        raise RowError(f"'{field}' file not found: {value}")
    if not resolved.is_file():
        raise RowError(f"'{field}' is not a file: {value}")
    if resolved.stat().st_size == 0:
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
    unknown = sorted(set(row) - set(KNOWN_FIELDS))
    if unknown:
        raise RowError(f"unknown field(s) {', '.join(unknown)}; expected {', '.join(KNOWN_FIELDS)}")
    for field in REQUIRED_FIELDS:
        if not str(row.get(field) or "").strip():
            raise RowError(f"missing required field '{field}'")
    round_name = str(row.get("round") or "").strip()
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
    video = _resolve_file(str(row["video"]), field="video", base_dir=base_dir)
    first_frame = row.get("first_frame") or ""
    character = row.get("character_reference") or ""
    seed = row.get("seed")
    if seed not in (None, ""):
        try:
            seed = int(seed)
        except (TypeError, ValueError) as exc:
            raise RowError(f"'seed' must be an integer, got {seed!r}") from exc
    else:
        seed = None
    checkpoint_id = row.get("policy_checkpoint_id") or None
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
    source = str(row.get("source") or EXTERNAL_SOURCES_DEFAULT).strip()
    return {
        "video": str(video),
        "video_sha256": sha,
        "prompt": str(row["prompt"]).strip(),
        "first_frame": str(_resolve_file(first_frame, field="first_frame", base_dir=base_dir))
        if first_frame
        else "",
        "character_reference": (
            str(_resolve_file(character, field="character_reference", base_dir=base_dir))
            if character
            else ""
        ),
        "round_id": round_.pk,
        "source": source,
        "seed": seed,
        "policy_checkpoint_id": int(checkpoint_id) if checkpoint_id else None,
    }


def import_rows(
    *,
    rows: list[dict],
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
    rounds: dict[str, Round | None] = {}
    seen: dict[tuple[int, str], int] = {}
    with transaction.atomic():
        batch = ImportBatch.objects.create(created_by=created_by, manifest_name=manifest_name[:300])
        report = []
        for line, row in enumerate(rows, start=1):
            video_path = str(row.get("video") or "")[:1000] if isinstance(row, dict) else ""
            try:
                payload = _validate_row(
                    row,
                    base_dir=base_dir,
                    default_round=default_round,
                    rounds=rounds,
                    seen=seen,
                    line=line,
                )
            except RowError as exc:
                report.append(
                    ImportRow(
                        batch=batch,
                        line=line,
                        video_path=video_path,
                        status=ImportRow.Status.ERROR,
                        message=str(exc),
                    )
                )
            else:
                report.append(
                    ImportRow(
                        batch=batch,
                        line=line,
                        video_path=video_path,
                        status=ImportRow.Status.QUEUED,
                        payload=payload,
                    )
                )
        ImportRow.objects.bulk_create(report)
        queued = [r.pk for r in report if r.status == ImportRow.Status.QUEUED]
        if not queued:
            batch.status = ImportBatch.Status.DONE
            batch.save(update_fields=["status"])
        from annotation.tasks import ingest_row

        for row_id in queued:
            transaction.on_commit(lambda row_id=row_id: ingest_row.delay(row_id))
    return batch


def import_manifest_file(
    *, path: Path, created_by=None, round_id: int | None = None
) -> ImportBatch:
    """Read a manifest from disk; relative video paths are relative to the manifest's folder."""
    rows = parse_manifest(path.read_text(encoding="utf-8"), name=path.name)
    return import_rows(
        rows=rows,
        manifest_name=path.name,
        created_by=created_by,
        base_dir=path.resolve().parent,
        round_id=round_id,
    )


def _save(local: Path, name: str) -> str:
    """Store a local file under a content-addressed name; an existing file is reused, not rewritten."""
    if default_storage.exists(name):
        return name
    with open(local, "rb") as handle:
        return default_storage.save(name, File(handle))


def _source_kind(source: str, checkpoint_id: int | None) -> str:
    if checkpoint_id or source.startswith("policy"):
        return Clip.SourceKind.POLICY
    if source in {"ground_truth", "gt", "real"}:
        return Clip.SourceKind.GROUND_TRUTH
    return Clip.SourceKind.EXTERNAL


def ingest_import_row(row_id: int) -> None:
    """Probe, transcode and register one queued import row. Safe to run twice."""
    with transaction.atomic():
        row = ImportRow.objects.select_for_update().filter(pk=row_id).first()
        if row is None or row.status not in {ImportRow.Status.QUEUED, ImportRow.Status.PROCESSING}:
            return  # done already (a redelivered task) or gone
        row.status = ImportRow.Status.PROCESSING
        row.save(update_fields=["status"])
    payload = row.payload
    written: list[str] = []
    try:
        clip = _ingest(payload, written)
    except (media.MediaError, RowError, IntegrityError, OSError) as exc:
        for name in written:
            _delete_if_unreferenced(name)
        message = str(exc)
        if isinstance(exc, IntegrityError):
            message = "duplicate: this video was imported into the round concurrently"
        ImportRow.objects.filter(pk=row_id).update(status=ImportRow.Status.ERROR, message=message)
        log.info("import row %s failed: %s", row_id, message)
    else:
        ImportRow.objects.filter(pk=row_id).update(
            status=ImportRow.Status.OK, clip=clip, message=""
        )
    _finish_batch_if_done(row.batch_id)


def _ingest(payload: dict, written: list[str]) -> Clip:
    sha = payload["video_sha256"]
    src = Path(payload["video"])
    if not src.exists():
        raise RowError(f"file disappeared before ingest: {src}")
    probe = media.probe_video(src, video_limits())
    with tempfile.TemporaryDirectory(prefix="labelhub-ingest-") as tmp:
        tmpdir = Path(tmp)
        browser_mp4 = tmpdir / "clip.mp4"
        media.transcode_for_browser(src, browser_mp4, fps=probe.fps)
        poster = tmpdir / "poster.jpg"
        media.extract_frame(browser_mp4, poster, index=0)
        if payload["first_frame"]:
            first_frame = Path(payload["first_frame"])
            media.validate_image(first_frame)
        else:
            first_frame = tmpdir / "frame3.png"
            media.extract_frame(src, first_frame, index=2)  # the paper's condition: the 3rd frame
        image_sha = media.sha256_file(first_frame)
        character_sha = ""
        if payload["character_reference"]:
            media.validate_image(Path(payload["character_reference"]))
            character_sha = media.sha256_file(Path(payload["character_reference"]))

        def store(local: Path, name: str) -> str:
            existed = default_storage.exists(name)
            saved = _save(local, name)
            if not existed:
                written.append(saved)
            return saved

        original_name = store(src, f"originals/{sha}{src.suffix.lower() or '.bin'}")
        video_name = store(browser_mp4, f"clips/{sha}.mp4")
        poster_name = store(poster, f"posters/{sha}.jpg")
        image_name = store(
            first_frame, f"conditions/{image_sha}{first_frame.suffix.lower() or '.png'}"
        )
        character_name = ""
        if character_sha:
            ref = Path(payload["character_reference"])
            character_name = store(ref, f"characters/{character_sha}{ref.suffix.lower() or '.png'}")

    prompt = payload["prompt"]
    prompt_sha = hashlib.sha256(prompt.encode("utf-8")).hexdigest()
    content_hash = hashlib.sha256(f"{image_sha}|{prompt_sha}|{character_sha}".encode()).hexdigest()
    with transaction.atomic():
        round_ = Round.objects.get(pk=payload["round_id"])
        condition, _ = Condition.objects.get_or_create(
            content_hash=content_hash,
            defaults={
                "image": image_name,
                "image_sha256": image_sha,
                "prompt": prompt,
                "prompt_sha256": prompt_sha,
                "character_reference": character_name,
            },
        )
        return Clip.objects.create(
            round=round_,
            condition=condition,
            source_kind=_source_kind(payload["source"], payload["policy_checkpoint_id"]),
            source_name=payload["source"][:100],
            policy_checkpoint_id=payload["policy_checkpoint_id"],
            seed=payload["seed"],
            original=original_name,
            original_sha256=sha,
            video=video_name,
            poster=poster_name,
            frames=probe.frames,
            fps=probe.fps,
            width=probe.width,
            height=probe.height,
            duration=probe.duration,
            status=Clip.Status.READY,
            target_ratings=round_.ratings_per_clip,
        )


def _delete_if_unreferenced(name: str) -> None:
    """Remove a file this row wrote, unless another clip or condition now points at it."""
    referenced = (
        Clip.objects.filter(original=name).exists()
        or Clip.objects.filter(video=name).exists()
        or Clip.objects.filter(poster=name).exists()
        or Condition.objects.filter(image=name).exists()
        or Condition.objects.filter(character_reference=name).exists()
    )
    if not referenced:
        default_storage.delete(name)


def _finish_batch_if_done(batch_id: int) -> None:
    pending = ImportRow.objects.filter(
        batch_id=batch_id, status__in=[ImportRow.Status.QUEUED, ImportRow.Status.PROCESSING]
    ).exists()
    if not pending:
        ImportBatch.objects.filter(pk=batch_id).update(status=ImportBatch.Status.DONE)
