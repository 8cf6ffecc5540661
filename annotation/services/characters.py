"""The character gallery: named characters (IPs) with reference images, linked to conditions.

Leads manage it in the browser (``annotation.views.characters``) and manifests name a condition's
character (``character`` field, see ``annotation.services.ingest``). Reward training compares a
clip's tracked character crops with its character's reference images (``scoring.jobs``).

A reference image is hostile until it passes the same check as ingest's condition images
(``media.normalise_image``: PNG, JPEG or WebP only, pixel and byte limits read from the header
before decoding) and is re-encoded to PNG; only that PNG is stored, under
``characters/<sha256>.png``. Names share the folder with ingest's character references, so a file
is removed only once no reference image, condition or import row points at it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from django.db import IntegrityError, transaction

from annotation import media
from annotation.models import Character, CharacterImage
from annotation.services.ingest_recovery import delete_if_unreferenced
from annotation.services.ingest_validation import image_limits
from labelhub import storage
from labelhub.errors import ServiceError

MAX_NAME_CHARS = 100
MAX_NOTES_CHARS = 5000
CHARACTER_FOLDER = "characters"


class CharacterError(ServiceError):
    """A gallery change that cannot be made; the message says why (shown to the lead)."""


def _checked_name(name) -> str:
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name:
        raise CharacterError("a character needs a name")
    if "\x00" in name:
        raise CharacterError("the name contains a NUL byte")
    if len(name) > MAX_NAME_CHARS:
        raise CharacterError(
            f"the name is {len(name)} characters, over the limit of {MAX_NAME_CHARS}"
        )
    return name


def _checked_notes(notes) -> str:
    notes = (notes or "").replace("\r\n", "\n").replace("\x00", "")
    if len(notes) > MAX_NOTES_CHARS:
        raise CharacterError(f"notes are limited to {MAX_NOTES_CHARS} characters")
    return notes


def _taken(name: str, *, except_id: int | None = None) -> bool:
    return Character.objects.filter(name__iexact=name).exclude(pk=except_id).exists()


def _character(character_id: int) -> Character:
    character = Character.objects.filter(pk=character_id).first()
    if character is None:
        raise CharacterError(f"character {character_id} does not exist", code="not_found")
    return character


def create_character(*, name: str, notes: str = "", created_by=None) -> Character:
    """A new character; names are unique ignoring case."""
    name, notes = _checked_name(name), _checked_notes(notes)
    if _taken(name):
        raise CharacterError(f"a character named {name!r} already exists", code="conflict")
    try:
        with transaction.atomic():
            return Character.objects.create(name=name, notes=notes, created_by=created_by)
    except IntegrityError:  # created concurrently under the same name
        raise CharacterError(
            f"a character named {name!r} already exists", code="conflict"
        ) from None


def update_character(*, character_id: int, name: str, notes: str | None = None) -> Character:
    """Rename a character (and replace its notes when given). Conditions keep their link: the
    new name appears in later exports."""
    character = _character(character_id)
    name = _checked_name(name)
    if _taken(name, except_id=character.pk):
        raise CharacterError(f"a character named {name!r} already exists", code="conflict")
    character.name = name
    fields = ["name"]
    if notes is not None:
        character.notes = _checked_notes(notes)
        fields.append("notes")
    try:
        with transaction.atomic():
            character.save(update_fields=fields)
    except IntegrityError:
        raise CharacterError(
            f"a character named {name!r} already exists", code="conflict"
        ) from None
    return character


def _copy_upload(upload, dst: Path, *, max_bytes: int) -> None:
    """Write an uploaded file (Django ``UploadedFile`` or an open binary file) to ``dst``,
    refusing it once it passes ``max_bytes``."""
    chunks = (
        upload.chunks() if hasattr(upload, "chunks") else iter(lambda: upload.read(1 << 20), b"")
    )
    written = 0
    with open(dst, "xb") as out:
        for chunk in chunks:
            written += len(chunk)
            if written > max_bytes:
                raise CharacterError(f"the image is over the limit of {max_bytes} bytes")
            out.write(chunk)


def add_reference_image(
    *, character_id: int, upload, original_name: str = "", created_by=None
) -> CharacterImage:
    """Validate an uploaded reference image, store it as PNG and add it to the character.

    ``upload`` is a Django ``UploadedFile`` or an open binary file. SVG and every other
    non-raster format, images over the pixel or byte limits, and unreadable files are refused
    with a ``CharacterError`` that says why; nothing is stored then.
    """
    character = _character(character_id)
    limits = image_limits()
    original_name = (original_name or getattr(upload, "name", "") or "")[:300]
    size = getattr(upload, "size", None)
    if size is not None and size > limits.max_bytes:
        raise CharacterError(f"the image is {size} bytes, over the limit of {limits.max_bytes}")
    with tempfile.TemporaryDirectory(prefix="labelhub-character-") as tmp:
        raw, png = Path(tmp) / "upload.in", Path(tmp) / "reference.png"
        _copy_upload(upload, raw, max_bytes=limits.max_bytes)
        try:
            width, height = media.normalise_image(raw, png, limits)
        except media.MediaError as exc:
            raise CharacterError(f"{original_name or 'the image'}: {exc}") from exc
        sha = media.sha256_file(png)
        if CharacterImage.objects.filter(character=character, image_sha256=sha).exists():
            raise CharacterError(f"{character.name} already has this image", code="conflict")
        # The file first, then the row: a crash in between leaves an unreferenced file that
        # storage_gc removes after its grace period, never a row without its file.
        stored = storage.save_verified(png, f"{CHARACTER_FOLDER}/{sha}.png", sha256=sha)
    try:
        with transaction.atomic():
            return CharacterImage.objects.create(
                character=character,
                image=stored.name,
                image_sha256=sha,
                width=width,
                height=height,
                original_name=original_name,
                created_by=created_by,
            )
    except IntegrityError:  # the same image added concurrently
        raise CharacterError(f"{character.name} already has this image", code="conflict") from None


def remove_reference_image(*, character_id: int, image_id: int) -> None:
    """Remove one reference image; its file goes too unless something else points at it."""
    with transaction.atomic():
        image = (
            CharacterImage.objects.select_for_update()
            .filter(pk=image_id, character_id=character_id)
            .first()
        )
        if image is None:
            raise CharacterError(f"image {image_id} is not a reference image of this character")
        name = image.image.name
        image.delete()
        # After commit, so a concurrent upload of the same content sees its row counted.
        transaction.on_commit(lambda: delete_if_unreferenced(name))
