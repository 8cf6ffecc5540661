"""The character gallery page for leads: list with thumbnails, create, rename, upload reference
images, remove one. Thin: ``annotation.services.characters`` does the work."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from annotation.models import CharacterImage
from annotation.selectors.characters import list_characters
from annotation.services import characters
from annotation.views.media import serve_stored_file
from labelhub.pages import show_error
from labelhub.roles import LEAD, role_required

lead_required = role_required(LEAD)


def _back(character_id: int | None = None):
    url = "/lead/characters/"
    return redirect(f"{url}#character-{character_id}" if character_id else url)


@lead_required
def characters_page(request):
    """GET lists the gallery; POST creates a character."""
    if request.method == "POST":
        try:
            character = characters.create_character(
                name=request.POST.get("name", ""),
                notes=request.POST.get("notes", ""),
                created_by=request.user,
            )
        except characters.CharacterError as error:
            show_error(request, error, doing="Not created")
            return _back()
        messages.success(request, f"Created {character.name}. Upload its reference images below.")
        return _back(character.pk)
    return render(
        request,
        "lead/characters.html",
        {"characters": list_characters(), "max_name_chars": characters.MAX_NAME_CHARS},
    )


@lead_required
@require_POST
def character_update(request, character_id: int):
    try:
        character = characters.update_character(
            character_id=character_id,
            name=request.POST.get("name", ""),
            notes=request.POST.get("notes"),
        )
    except characters.CharacterError as error:
        show_error(request, error, doing="Not saved")
    else:
        messages.success(request, f"Saved {character.name}.")
    return _back(character_id)


@lead_required
@require_POST
def character_images_add(request, character_id: int):
    """Upload one or more reference images; each is validated on its own."""
    uploads = request.FILES.getlist("images")
    if not uploads:
        messages.error(request, "Choose at least one image to upload.")
        return _back(character_id)
    added = 0
    for upload in uploads:
        try:
            characters.add_reference_image(
                character_id=character_id,
                upload=upload,
                original_name=upload.name,
                created_by=request.user,
            )
        except characters.CharacterError as error:
            show_error(request, error, doing="Not added")
        else:
            added += 1
    if added:
        messages.success(request, f"Added {added} reference image(s).")
    return _back(character_id)


@lead_required
@require_POST
def character_image_remove(request, character_id: int, image_id: int):
    try:
        characters.remove_reference_image(character_id=character_id, image_id=image_id)
    except characters.CharacterError as error:
        show_error(request, error, doing="Not removed")
    else:
        messages.success(request, "Reference image removed.")
    return _back(character_id)


@lead_required
@require_GET
def character_image_file(request, image_id: int):
    """A reference image for the gallery page (stored as PNG by the service), served like clip
    media."""
    image = get_object_or_404(CharacterImage, pk=image_id)
    return serve_stored_file(request, image.image.name, "character")
