"""Ingest, part one: what a manifest and each of its rows must be before anything is queued.

A person's manifest is hostile until checked here: every field's type and range, every file under
the import roots (``allowed_roots``), no duplicate video in the round. A bad row raises
``RowError`` (its line in the batch report); only a manifest that cannot be read at all raises
``ManifestError``. The ingest task (``ingest_task``) checks its private copies again with
``media`` and the same limits.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from annotation import media
from annotation.models import Character, Clip, Condition, Round
from labelhub.errors import ServiceError

# Where generation jobs store candidate videos for import_generated_clips.
GENERATED_FOLDER = "generated"

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


class ManifestError(ServiceError):
    """The manifest as a whole cannot be read (not one bad row: those go in the report)."""


class RowError(ServiceError):
    """One row is bad; the message goes in the batch report."""


def clean_text(text: str, limit: int = 2000) -> str:
    """Text safe for a Postgres text column and a report line: no NUL bytes, bounded length."""
    text = str(text).replace("\x00", "\\x00")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_manifest(data: bytes, *, name: str) -> list[dict]:
    """Rows of an uploaded or stored manifest's bytes (UTF-8 text, see ``parse_manifest``)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"the manifest is not UTF-8 text: {exc.reason}") from exc
    return parse_manifest(text, name=name)


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
            row = {"__error__": f"line {number} cannot be read: {clean_text(exc, 200)}"}
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
        raise RowError(f"'{field}' must be an integer, got {clean_text(repr(value), 80)}")
    if isinstance(value, str):
        if not _INTEGER.fullmatch(value.strip()):
            raise RowError(f"'{field}' must be an integer, got {clean_text(repr(value), 80)}")
        value = int(value.strip())
    if not low <= value <= high:
        raise RowError(f"'{field}' {value} is out of range ({low} to {high})")
    return value


def resolve_file(value: str, *, field: str, base_dir: Path | None) -> Path:
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


def validate_row(
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
            f"unknown field(s) {clean_text(', '.join(unknown), 300)}; expected {', '.join(KNOWN_FIELDS)}"
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
    video = resolve_file(video_value, field="video", base_dir=base_dir)
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
            str(resolve_file(first_frame, field="first_frame", base_dir=base_dir))
            if first_frame
            else ""
        ),
        "character_reference": (
            str(resolve_file(character, field="character_reference", base_dir=base_dir))
            if character
            else ""
        ),
        "character_id": character_id,
        "round_id": round_.pk,
        "source": source,
        "seed": seed,
        "policy_checkpoint_id": checkpoint_id,
    }


def validate_generated_row(row, *, round_id: int) -> dict:
    """One row of ``import_generated_clips``: a storage name our generation job wrote under
    ``generated/`` and an existing condition (no import-root check: no person named them)."""
    if not isinstance(row, dict):
        raise RowError("not an object with fields")
    unknown = sorted(str(k) for k in set(row) - {"video", "condition_id", "seed", "source"})
    if unknown:
        raise RowError(f"unknown field(s) {clean_text(', '.join(unknown), 300)}")
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
        "round_id": round_id,
        "source": _text_field(row, "source", limit=MAX_SOURCE_CHARS) or "generated",
        "seed": _int_field(row.get("seed"), "seed"),
    }
