"""The character gallery (issue 12): leads manage characters and reference images in the browser,
manifests link conditions to characters by name, exports carry the character, and reward
training builds its gallery from the reference images and scores clips against it."""

from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from PIL import Image

from annotation.models import Character, CharacterImage, Clip, Condition, ImportRow
from annotation.services import characters, ingest
from annotation.services.exports import create_snapshot
from labelhub.dimensions import DIMENSION_KEYS
from tests.conftest import make_user
from tests.lead_data import (
    labelled_clip,
    link_character,
    make_clip,
    make_condition,
    make_round,
    rate,
    synthetic_condition,
)

pytestmark = pytest.mark.django_db

SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
    b'<script>alert(1)</script><rect width="10" height="10"/></svg>'
)


def _png_bytes(path: Path, colour=(200, 40, 90), size=(40, 30)) -> bytes:
    Image.new("RGB", size, colour).save(path, format="PNG")
    return path.read_bytes()


def _stored(folder: str = "characters") -> set[str]:
    if not default_storage.exists(folder):
        return set()
    return {f"{folder}/{n}" for n in default_storage.listdir(folder)[1]}


def _messages(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def test_lead_manages_the_gallery_in_the_browser(
    client, tmp_path, django_capture_on_commit_callbacks
):
    lead, annotator = make_user("lena", "lead"), make_user("anna", "annotator")
    client.force_login(annotator)
    assert client.get("/lead/characters/").status_code == 403
    client.force_login(lead)
    page = client.get("/lead/characters/")
    assert page.status_code == 200 and "No characters yet" in page.content.decode()

    # Create; a second character with the same name (any case) is refused with a message.
    response = client.post(
        "/lead/characters/", {"name": " Sakura ", "notes": "pink hair"}, follow=True
    )
    sakura = Character.objects.get()
    assert (sakura.name, sakura.notes, sakura.created_by) == ("Sakura", "pink hair", lead)
    assert f'id="character-{sakura.pk}"' in response.content.decode()
    response = client.post("/lead/characters/", {"name": "SAKURA"}, follow=True)
    assert any("already exists" in m for m in _messages(response))
    assert Character.objects.count() == 1

    # Upload a PNG: stored re-encoded as PNG under characters/, shown as a thumbnail.
    png = _png_bytes(tmp_path / "ref.png")
    upload = ContentFile(png, name="ref.png")
    response = client.post(
        f"/lead/characters/{sakura.pk}/images/", {"images": [upload]}, follow=True
    )
    assert any("Added 1 reference image" in m for m in _messages(response))
    image = CharacterImage.objects.get(character=sakura)
    assert image.image.name == f"characters/{image.image_sha256}.png"
    assert (image.width, image.height, image.original_name) == (40, 30, "ref.png")
    with Image.open(default_storage.open(image.image.name)) as stored:
        assert stored.format == "PNG" and stored.getpixel((5, 5)) == (200, 40, 90)
    thumb_url = reverse("annotation:lead_character_image_file", args=[image.pk])
    assert thumb_url in response.content.decode()
    thumb = client.get(thumb_url)
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/png"
    assert thumb["Content-Security-Policy"] == "sandbox"
    assert b"".join(thumb.streaming_content).startswith(b"\x89PNG")
    client.force_login(annotator)
    assert client.get(thumb_url).status_code == 403
    client.force_login(lead)

    # An SVG (with script) is refused with a message that says why; nothing is stored.
    before = _stored()
    response = client.post(
        f"/lead/characters/{sakura.pk}/images/",
        {"images": [ContentFile(SVG, name="evil.png")]},
        follow=True,
    )
    text = " ".join(_messages(response))
    assert "Not added" in text and "SVG" in text and "evil.png" in text
    assert CharacterImage.objects.filter(character=sakura).count() == 1 and _stored() == before
    # The same image twice is refused too.
    response = client.post(
        f"/lead/characters/{sakura.pk}/images/",
        {"images": [ContentFile(png, name="again.png")]},
        follow=True,
    )
    assert any("already has this image" in m for m in _messages(response))

    # Rename (conditions keep the link); a name taken by another character is refused.
    client.post("/lead/characters/", {"name": "Hikari"})
    response = client.post(
        f"/lead/characters/{sakura.pk}/", {"name": "Hikari", "notes": ""}, follow=True
    )
    assert any("already exists" in m for m in _messages(response))
    client.post(f"/lead/characters/{sakura.pk}/", {"name": "Sakura Haruno", "notes": "lead role"})
    sakura.refresh_from_db()
    assert (sakura.name, sakura.notes) == ("Sakura Haruno", "lead role")

    # The gallery file is referenced: storage_gc keeps it.
    orphans = ingest.clean_unreferenced(grace=timedelta(0), dry_run=True)
    assert image.image.name not in orphans

    # Delete the reference: the row and (nothing else uses it) the file go.
    with pytest.raises(characters.CharacterError):
        characters.remove_reference_image(character_id=sakura.pk + 1, image_id=image.pk)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/lead/characters/{sakura.pk}/images/{image.pk}/remove/", follow=True
        )
    assert any("removed" in m for m in _messages(response))
    assert not CharacterImage.objects.filter(pk=image.pk).exists()
    assert not default_storage.exists(image.image.name)
    assert client.get(thumb_url).status_code == 404


def test_removing_a_reference_keeps_a_file_something_else_uses(
    tmp_path, django_capture_on_commit_callbacks
):
    sakura = characters.create_character(name="Sakura")
    hikari = characters.create_character(name="Hikari")
    _png_bytes(tmp_path / "ref.png")
    added = {}
    for character in (sakura, hikari):
        with open(tmp_path / "ref.png", "rb") as fh:
            added[character.name] = characters.add_reference_image(
                character_id=character.pk, upload=fh
            )
    name = added["Sakura"].image.name
    assert added["Hikari"].image.name == name  # content-addressed: one file, two references
    # ... and ingest stored the same PNG as a condition's character reference.
    condition = make_condition("img", "prompt", character_reference=name)
    with django_capture_on_commit_callbacks(execute=True):
        characters.remove_reference_image(character_id=sakura.pk, image_id=added["Sakura"].pk)
    assert default_storage.exists(name)  # Hikari and the condition still use it
    with django_capture_on_commit_callbacks(execute=True):
        characters.remove_reference_image(character_id=hikari.pk, image_id=added["Hikari"].pk)
    assert default_storage.exists(name)  # the condition still does
    # Once nothing points at it, removing the last reference removes the file.
    with open(tmp_path / "ref.png", "rb") as fh:
        last = characters.add_reference_image(character_id=sakura.pk, upload=fh)
    condition.character_reference = ""
    condition.save(update_fields=["character_reference"])
    with django_capture_on_commit_callbacks(execute=True):
        characters.remove_reference_image(character_id=sakura.pk, image_id=last.pk)
    assert not default_storage.exists(name)
    with pytest.raises(characters.CharacterError, match="empty"):
        characters.add_reference_image(character_id=sakura.pk, upload=ContentFile(b"", name="x"))


def test_manifest_character_links_conditions(
    tmp_path, video_factory, django_capture_on_commit_callbacks
):
    make_round("r1")
    make_round("r2")
    sakura = characters.create_character(name="Sakura")
    hikari = characters.create_character(name="Hikari")
    frame = tmp_path / "frame.png"
    _png_bytes(frame, size=(32, 32))
    videos = [video_factory(seconds=0.5 + 0.125 * i, size="32x32") for i in range(3)]
    rows = [
        {"video": str(videos[0]), "prompt": "she waves", "character": "sakura", "round": "r1"},
        {"video": str(videos[1]), "prompt": "no character here", "round": "r1"},
        {"video": str(videos[2]), "prompt": "she runs", "character": "Nobody", "round": "r1"},
        {"video": str(videos[2]), "prompt": "he runs", "character": 7, "round": "r1"},
        {
            "video": str(videos[2]),
            "prompt": "he jumps",
            "first_frame": str(frame),
            "character": "Hikari",
            "round": "r1",
        },
    ]
    with django_capture_on_commit_callbacks(execute=True):
        batch = ingest.import_rows(rows=rows, manifest_name="m.jsonl")
    report = {r.line: r for r in batch.rows.all()}
    assert [report[n].status for n in (1, 2, 5)] == [ImportRow.Status.OK] * 3
    assert report[3].status == ImportRow.Status.ERROR
    assert "unknown character 'Nobody'" in report[3].message
    assert report[4].status == ImportRow.Status.ERROR and "'character' must be a string" in (
        report[4].message
    )
    by_prompt = {c.prompt: c for c in Condition.objects.all()}
    assert by_prompt["she waves"].character == sakura
    assert by_prompt["no character here"].character is None
    assert by_prompt["he jumps"].character == hikari

    # The same condition (image + prompt) in another round: linked to the same character it
    # already has is fine; naming a different one is that row's error.
    again = [
        {
            "video": str(videos[2]),
            "prompt": "he jumps",
            "first_frame": str(frame),
            "character": "hikari",
            "round": "r2",
        },
        {
            "video": str(videos[1]),
            "prompt": "he jumps",
            "first_frame": str(frame),
            "character": "Sakura",
            "round": "r2",
        },
    ]
    with django_capture_on_commit_callbacks(execute=True):
        batch = ingest.import_rows(rows=again, manifest_name="again.jsonl")
    first, second = batch.rows.order_by("line")
    assert first.status == ImportRow.Status.OK, first.message
    assert second.status == ImportRow.Status.ERROR
    assert "already linked to character 'Hikari'" in second.message
    assert Clip.objects.filter(round__name="r2").count() == 1


def test_export_has_the_character_columns(tmp_path):
    round_ = make_round("r1")
    rater = make_user("rater", "annotator")
    sakura = characters.create_character(name='Sakura, the "first"')
    with_character = make_condition("a", "with a character")
    link_character(with_character, sakura)
    without = make_condition("b", "without one")
    clips = {
        "with": make_clip(round_, with_character),
        "without": make_clip(round_, without),
    }
    for clip in clips.values():
        rate(clip, rater, 4)
    snapshot = create_snapshot(round_ids=[round_.pk], test_fraction=0.0, seed=0)
    paths = {k: default_storage.path(v["name"]) for k, v in snapshot.files.items()}
    frames = {
        "parquet": pd.read_parquet(paths["labels_parquet"]),
        "jsonl": pd.read_json(paths["labels_jsonl"], lines=True, dtype=False),
        "csv": pd.read_csv(paths["labels_csv"], keep_default_na=False),
    }
    for fmt, df in frames.items():
        rows = {r["clip_id"]: r for r in df.to_dict("records")}
        named = rows[clips["with"].pk]
        assert named["character"] == 'Sakura, the "first"', fmt
        assert int(named["character_id"]) == sakura.pk, fmt
        plain = rows[clips["without"].pk]
        assert plain["character"] == "", fmt
        assert plain["character_id"] in ("", None) or pd.isna(plain["character_id"]), fmt
    card = default_storage.open(snapshot.files["card"]["name"]).read().decode()
    assert "`character_id`, `character`" in card


# --- reward training with a gallery --------------------------------------------------------------


def test_reward_training_gets_the_gallery_and_scores_against_it(tmp_path, two_threads):
    from runs.models import Run
    from runs.services import execute_run
    from scoring.anime_reward.synthetic import CHARACTERS, make_gallery, make_rule_clips
    from scoring.jobs import load_reward_model, score_clips
    from scoring.models import ClipScore, RewardModel
    from scoring.services import request_reward_training

    # Two gallery characters with their reference images, uploaded through the service.
    references = make_gallery(tmp_path / "gallery", size=64, references=2)
    cast = {}
    for texture in CHARACTERS[:2]:
        character = characters.create_character(name=texture)
        for path in references[texture]:
            with open(path, "rb") as fh:
                characters.add_reference_image(character_id=character.pk, upload=fh)
        cast[texture] = character
    extra = characters.create_character(name="no references yet")

    # Eight labelled clips, each showing one of the two characters.
    round_ = make_round("gallery-r1")
    synthetic = [
        c for c in make_rule_clips(tmp_path / "clips", 16, seed=3) if c.character_id in cast
    ]
    assert len(synthetic) == 8
    for n, rule in enumerate(synthetic):
        key = str(rule.index)
        # one clip names a character without references: it trains without the gallery
        character = extra if n == 0 else cast[rule.character_id]
        condition = synthetic_condition(rule, key=key, character=character)
        labelled_clip(round_, condition, rule, key=key)
    snapshot = create_snapshot(round_ids=[round_.pk], test_fraction=0.25, seed=0)

    run = request_reward_training(
        snapshot_id=snapshot.pk,
        name="gallery-reward",
        config={"epochs": 1, "batch_size": 4, "dimensions": ["character_consistency"]},
        enqueue=False,
    )
    execute_run(run.pk)
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    reward_model = RewardModel.objects.get(name="gallery-reward")
    ids = sorted(c.pk for c in cast.values())
    assert reward_model.config["gallery_characters"] == ids

    # Loading the checkpoint gets the gallery saved with it (reference images at BLIP's size).
    model = load_reward_model(reward_model, device="cpu")
    assert sorted(model.gallery) == [str(i) for i in ids]
    assert all(len(model.gallery[str(i)]) == 2 for i in ids)

    # Scoring passes each clip's character: linking a clip to the other character changes its
    # character score and nothing else.
    clip_ids = list(Clip.objects.filter(round=round_).order_by("pk").values_list("pk", flat=True))
    assert score_clips(reward_model=reward_model, clip_ids=clip_ids, model=model)["scored"] == 8
    target = Clip.objects.select_related("condition").get(pk=clip_ids[1])
    before = ClipScore.objects.get(clip=target, reward_model=reward_model).rewards()
    other = next(c for c in cast.values() if c.pk != target.condition.character_id)
    link_character(target.condition, other)
    ClipScore.objects.filter(clip=target).delete()
    score_clips(reward_model=reward_model, clip_ids=[target.pk], model=model)
    after = ClipScore.objects.get(clip=target, reward_model=reward_model).rewards()
    assert after["character_consistency"] != pytest.approx(
        before["character_consistency"], abs=1e-7
    )
    for key in DIMENSION_KEYS:
        if key != "character_consistency":
            assert after[key] == pytest.approx(before[key], abs=1e-6)


# --- the page in a real browser ------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_gallery_page_in_chromium(live_server, tmp_path):
    from playwright.sync_api import expect

    from tests.browser import chromium_page, login

    make_user("lena", "lead")
    _png_bytes(tmp_path / "ref.png", size=(48, 64))
    (tmp_path / "evil.svg").write_bytes(SVG)
    sakura = ".character[data-name=Sakura]"
    with chromium_page() as page:
        login(page, live_server.url, "lena", "pw-lena")
        page.goto(f"{live_server.url}/lead/characters/")
        page.fill("#character-create input[name=name]", "Sakura")
        page.click("#character-create button[type=submit]")
        expect(page.locator(".messages")).to_contain_text("Created Sakura")

        page.locator(f"{sakura} input[type=file]").set_input_files(str(tmp_path / "ref.png"))
        page.locator(f"{sakura} form[enctype] button").click()
        expect(page.locator(".messages")).to_contain_text("Added 1 reference image")
        thumb = page.locator(f"{sakura} .gallery-refs img")
        expect(thumb).to_have_count(1)
        page.wait_for_function(
            "img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle()
        )
        assert thumb.evaluate("img => img.naturalWidth") == 48

        page.locator(f"{sakura} input[type=file]").set_input_files(str(tmp_path / "evil.svg"))
        page.locator(f"{sakura} form[enctype] button").click()
        expect(page.locator(".messages")).to_contain_text("SVG included, are refused")
        expect(page.locator(f"{sakura} .gallery-refs img")).to_have_count(1)

        page.locator(f"{sakura} figure button").click()
        expect(page.locator(".messages")).to_contain_text("Reference image removed")
        expect(page.locator(f"{sakura} .gallery-refs img")).to_have_count(0)
    assert not CharacterImage.objects.exists() and Character.objects.get().name == "Sakura"
