"""The trust boundary, tried as a hostile annotator would (issue 10): through the real API with
HTTP basic auth or a session, only the annotator a clip was leased to can rate, skip or flag it,
see it or judge its pair; malformed bodies and headers get a clear 4xx, never a 500; media is
served with the type ingest produced, sandboxed; a lead restores a pulled clip, on the record."""

import base64
import json
import random
import uuid

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client

from annotation.models import (
    AuditEntry,
    Character,
    CharacterImage,
    Clip,
    ClipLabel,
    Condition,
    Lease,
    PairwiseJudgement,
    PairwiseTask,
    Rating,
    Round,
    Skip,
)
from annotation.services.pairwise import create_pairwise_tasks
from tests.conftest import client_for, make_user
from tests.factories import make_ready_clips, make_round, scores

pytestmark = pytest.mark.django_db

PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'


def basic_client(user) -> Client:
    """A client that authenticates every API request with HTTP basic auth, as a script would."""
    token = base64.b64encode(f"{user.username}:pw-{user.username}".encode()).decode()
    return Client(HTTP_AUTHORIZATION=f"Basic {token}")


def post_json(client: Client, url: str, body) -> "object":
    return client.post(url, json.dumps(body), content_type="application/json")


def rating_body(value: int = 4) -> dict:
    return {**scores(value), "seconds_spent": 2.0, "idempotency_key": str(uuid.uuid4())}


def lease_next(client: Client, round_id: int) -> int:
    response = post_json(client, f"/api/rounds/{round_id}/next/", {})
    assert response.status_code == 200, response.content
    return response.json()["clip"]["id"]


def nothing_written(clip: Clip) -> None:
    clip.refresh_from_db()
    assert clip.rating_count == 0 and clip.status == Clip.Status.READY
    assert not Rating.objects.filter(clip=clip).exists()
    assert not ClipLabel.objects.filter(clip=clip).exists()
    assert not Skip.objects.filter(clip=clip).exists()


@pytest.fixture
def round_with_clips():
    round_ = make_round("r1", ratings_per_clip=2)
    return round_, make_ready_clips(round_, 4)


def test_rating_an_unleased_clip_is_refused_and_counts_nothing(round_with_clips):
    round_, clips = round_with_clips
    mallory = make_user("mallory", "annotator")
    client = basic_client(mallory)
    target = clips[3]  # the clip mallory wants to rate; the queue gives clips in pk order
    refused = post_json(client, f"/api/clips/{target.pk}/ratings/", rating_body(5))
    assert refused.status_code == 403, refused.content
    assert "do not hold this clip" in refused.json()["detail"]
    nothing_written(target)

    # Holding a lease on another clip does not open this one.
    leased = lease_next(client, round_.pk)
    assert leased != target.pk
    assert post_json(client, f"/api/clips/{target.pk}/ratings/", rating_body()).status_code == 403
    nothing_written(target)
    # The clip the queue gave is rated as before, and its lease ends with the rating.
    saved = post_json(client, f"/api/clips/{leased}/ratings/", rating_body())
    assert saved.status_code == 201, saved.content
    assert Clip.objects.get(pk=leased).rating_count == 1
    again = post_json(client, f"/api/clips/{leased}/ratings/", rating_body())
    assert again.status_code == 409 and "already rated" in again.json()["detail"]


def test_rating_needs_an_open_round_and_a_ready_clip(round_with_clips):
    round_, _clips = round_with_clips
    ann = make_user("ann", "annotator")
    client = basic_client(ann)
    first = lease_next(client, round_.pk)
    second = lease_next(client, round_.pk)  # preloaded: two leases are allowed
    Clip.objects.filter(pk=second).update(status=Clip.Status.PULLED)
    pulled = post_json(client, f"/api/clips/{second}/ratings/", rating_body())
    assert pulled.status_code == 409 and "pulled" in pulled.json()["detail"]
    Round.objects.filter(pk=round_.pk).update(status=Round.Status.CLOSED)
    closed = post_json(client, f"/api/clips/{first}/ratings/", rating_body())
    assert closed.status_code == 409 and "closed" in closed.json()["detail"]
    skip = post_json(client, f"/api/clips/{first}/skip/", {"reason": "x"})
    assert skip.status_code == 409
    assert not Rating.objects.exists() and not Skip.objects.exists()
    # The refused writes rolled back: ann still holds both clips.
    assert set(Lease.objects.filter(annotator=ann).values_list("clip_id", flat=True)) == {
        first,
        second,
    }
    # A non-holder learns nothing about the round or the clip: just that it is not theirs.
    outsider = basic_client(make_user("eve", "annotator"))
    assert post_json(outsider, f"/api/clips/{first}/ratings/", rating_body()).status_code == 403


def test_skip_on_an_unleased_clip_is_refused_and_grants_no_view(round_with_clips):
    _round, clips = round_with_clips
    clip = clips[2]
    mallory = make_user("mallory", "annotator")
    api = basic_client(mallory)
    browser = client_for(mallory)
    assert api.get(f"/api/clips/{clip.pk}/").status_code == 403
    skip = post_json(api, f"/api/clips/{clip.pk}/skip/", {"reason": "x"})
    assert skip.status_code == 403 and "do not hold" in skip.json()["detail"]
    assert api.get(f"/api/clips/{clip.pk}/").status_code == 403
    for kind in ("video", "poster", "condition", "original"):
        assert browser.get(f"/media/clip/{clip.pk}/{kind}").status_code == 403
    nothing_written(clip)


def test_two_non_holders_flagging_a_fully_rated_clip_do_not_pull_it():
    round_ = make_round("r1", ratings_per_clip=1)
    clip, other = make_ready_clips(round_, 2)
    rater = basic_client(make_user("rater", "annotator"))
    assert lease_next(rater, round_.pk) == clip.pk
    assert post_json(rater, f"/api/clips/{clip.pk}/ratings/", rating_body()).status_code == 201
    for name in ("mallory", "eve"):
        flag = post_json(
            basic_client(make_user(name, "annotator")),
            f"/api/clips/{clip.pk}/flag/",
            {"reason": "broken"},
        )
        assert flag.status_code == 403, flag.content
    clip.refresh_from_db()
    assert clip.status == Clip.Status.READY and clip.rating_count == 1
    assert not Skip.objects.filter(clip=clip).exists() and not AuditEntry.objects.exists()
    # The rater held the clip once, but no longer: a flag after the rating does not count either.
    assert post_json(rater, f"/api/clips/{clip.pk}/flag/", {"reason": "x"}).status_code == 403
    assert Clip.objects.get(pk=other.pk).status == Clip.Status.READY


def test_flags_from_holders_pull_and_a_lead_restores_with_an_audit_entry():
    round_ = make_round("r1", ratings_per_clip=3)
    (clip,) = make_ready_clips(round_, 1)
    holders = [basic_client(make_user(n, "annotator")) for n in ("ann", "bob")]
    for client, reason in zip(holders, ["does not play", "green frames"], strict=True):
        assert lease_next(client, round_.pk) == clip.pk
        flag = post_json(client, f"/api/clips/{clip.pk}/flag/", {"reason": reason})
        assert flag.status_code == 200, flag.content
    clip.refresh_from_db()
    assert clip.status == Clip.Status.PULLED
    pull = AuditEntry.objects.get(action=AuditEntry.Action.PULL_CLIP)
    assert pull.actor is None and [f["reason"] for f in pull.details["flags"]] == [
        "does not play",
        "green frames",
    ]
    # A newcomer gets nothing from the queue: the clip is pulled.
    newcomer = basic_client(make_user("cid", "annotator"))
    assert post_json(newcomer, f"/api/rounds/{round_.pk}/next/", {}).status_code == 204

    lead = make_user("lena", "lead")
    lead_page = client_for(lead)
    page = lead_page.get(f"/lead/?round={round_.pk}").content.decode()
    section = page[page.index('id="pulled-clips"') :]
    assert f"/lead/clips/{clip.pk}/restore/" in section
    assert "ann: does not play" in section and "bob: green frames" in section

    annotator_try = client_for(make_user("dan", "annotator"))
    assert annotator_try.post(f"/lead/clips/{clip.pk}/restore/").status_code == 403
    assert Clip.objects.get(pk=clip.pk).status == Clip.Status.PULLED

    restored = lead_page.post(f"/lead/clips/{clip.pk}/restore/")
    assert restored.status_code == 302
    clip.refresh_from_db()
    assert clip.status == Clip.Status.READY
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RESTORE_CLIP)
    assert entry.actor == lead and entry.clip_id == clip.pk and entry.created_at is not None
    assert len(entry.details["flags"]) == 2
    # The flaggers keep their skip (not shown the clip again); their flags no longer count.
    assert Skip.objects.filter(clip=clip).count() == 2
    assert not Skip.objects.filter(clip=clip, broken=True).exists()
    page = lead_page.get(f"/lead/?round={round_.pk}").content.decode()
    assert "No clip is pulled in this round." in page
    assert lead_page.post(f"/lead/clips/{clip.pk}/restore/").status_code == 302  # not pulled
    assert AuditEntry.objects.filter(action=AuditEntry.Action.RESTORE_CLIP).count() == 1
    assert lease_next(newcomer, round_.pk) == clip.pk


@pytest.fixture
def pair_task():
    round_ = make_round("pairs")
    base, tuned = make_ready_clips(round_, 2)
    Clip.objects.filter(pk=base.pk).update(source_name="base")
    Clip.objects.filter(pk=tuned.pk).update(source_name="tuned", condition=base.condition)
    (task,) = create_pairwise_tasks(source_a="tuned", source_b="base", rng=random.Random(1))
    return task


def test_pairwise_judgement_without_a_lease_is_refused(pair_task):
    mallory = basic_client(make_user("mallory", "annotator"))
    refused = post_json(mallory, f"/api/pairwise/{pair_task.pk}/judge/", {"choice": "left"})
    assert refused.status_code == 403 and "do not hold this pair" in refused.json()["detail"]
    assert not PairwiseJudgement.objects.exists()
    assert PairwiseTask.objects.get(pk=pair_task.pk).judgement_count == 0
    assert mallory.get(f"/api/clips/{pair_task.clip_a_id}/").status_code == 403

    judge = make_user("judy", "annotator")
    api = basic_client(judge)
    assert post_json(api, "/api/pairwise/next/", {}).json()["task_id"] == pair_task.pk
    assert client_for(judge).get(f"/media/clip/{pair_task.clip_a_id}/poster").status_code in (
        200,
        404,  # placeholder clips have no poster file; what matters is that it is not a 403
    )
    # A pulled clip takes its pair out of judging.
    Clip.objects.filter(pk=pair_task.clip_b_id).update(status=Clip.Status.PULLED)
    pulled = post_json(api, f"/api/pairwise/{pair_task.pk}/judge/", {"choice": "tie"})
    assert pulled.status_code == 409 and not PairwiseJudgement.objects.exists()
    Clip.objects.filter(pk=pair_task.clip_b_id).update(status=Clip.Status.READY)
    saved = post_json(api, f"/api/pairwise/{pair_task.pk}/judge/", {"choice": "left"})
    assert saved.status_code == 201, saved.content


@pytest.mark.parametrize("body", ["null", "5", "[null]", '"text"', "[]", "true"])
def test_non_object_bodies_get_a_400_on_every_annotation_post(round_with_clips, pair_task, body):
    round_, clips = round_with_clips
    ann = make_user("ann", "annotator")
    client = basic_client(ann)
    clip_id = lease_next(client, round_.pk)
    for url in (
        f"/api/clips/{clip_id}/ratings/",
        f"/api/clips/{clip_id}/skip/",
        f"/api/clips/{clip_id}/flag/",
        f"/api/rounds/{round_.pk}/next/",
        "/api/pairwise/next/",
        f"/api/pairwise/{pair_task.pk}/judge/",
    ):
        response = client.post(url, body, content_type="application/json")
        assert response.status_code == 400, (url, response.status_code, response.content)
        assert response.json()
    lead = basic_client(make_user("lena", "lead"))
    imports = lead.post("/api/imports/", body, content_type="application/json")
    assert imports.status_code == 400
    assert not Rating.objects.exists() and not Skip.objects.exists()


@pytest.mark.parametrize(
    "exclude", ["abc", ["abc"], [None], [10**30], [-1], {"a": 1}, list(range(1, 50))]
)
def test_bad_exclude_lists_are_400s(round_with_clips, pair_task, exclude):
    round_, _clips = round_with_clips
    client = basic_client(make_user("ann", "annotator"))
    for url in ("/api/pairwise/next/", f"/api/rounds/{round_.pk}/next/"):
        response = post_json(client, url, {"exclude": exclude})
        assert response.status_code == 400, (url, response.content)
        assert "exclude" in response.json()


def test_unknown_rating_fields_are_named(round_with_clips):
    round_, _clips = round_with_clips
    client = basic_client(make_user("ann", "annotator"))
    clip_id = lease_next(client, round_.pk)
    response = post_json(client, f"/api/clips/{clip_id}/ratings/", {**rating_body(), "1": 2})
    assert response.status_code == 400 and "unknown field(s): 1" in response.json()["detail"]


@pytest.fixture
def stored_clip(round_with_clips):
    """A leased clip whose files are real stored bytes; the condition image is a hostile SVG."""
    round_, clips = round_with_clips
    clip = clips[0]
    video = default_storage.save("clips/hostile-name.svg", ContentFile(bytes(range(256)) * 40))
    condition = default_storage.save("conditions/evil.png", ContentFile(SVG))
    character = default_storage.save("characters/ok.svg", ContentFile(PNG))
    Clip.objects.filter(pk=clip.pk).update(video=video, original=condition)
    Condition.objects.filter(pk=clip.condition_id).update(
        image=condition, character_reference=character
    )
    ann = make_user("ann", "annotator")
    assert lease_next(basic_client(ann), round_.pk) == clip.pk
    return clip, client_for(ann)


def test_media_type_comes_from_ingest_never_the_name_and_is_sandboxed(stored_clip):
    clip, browser = stored_clip
    expected = {
        "video": "video/mp4",  # ingest always writes a browser MP4, whatever the name says
        "condition": "application/octet-stream",  # SVG bytes named .png: not a raster
        "character": "image/png",  # PNG bytes named .svg: served as what they are
        "original": "application/octet-stream",  # the submitted file: a download only
    }
    for kind, content_type in expected.items():
        response = browser.get(f"/media/clip/{clip.pk}/{kind}")
        assert response.status_code == 200, kind
        assert response["Content-Type"] == content_type, kind
        assert response["Content-Security-Policy"] == "sandbox"
        assert response["X-Content-Type-Options"] == "nosniff"
        if content_type == "application/octet-stream":
            assert response["Content-Disposition"].startswith("attachment")
        b"".join(response.streaming_content)


SERVED_HEADERS = (
    "Content-Type",
    "Content-Security-Policy",
    "X-Content-Type-Options",
    "Content-Disposition",
    "Content-Length",
    "Content-Range",
    "Accept-Ranges",
    "Cache-Control",
)


@pytest.mark.parametrize("range_header", [None, "bytes=2-9"])
def test_character_gallery_images_are_served_like_clip_media(stored_clip, range_header):
    """The gallery's image route and the clip media route serve one stored file with the same
    headers: type from the bytes, sandbox, nosniff, an opaque type as a download, Range."""
    clip, _ = stored_clip
    lead = client_for(make_user("lena", "lead"))
    character = Character.objects.create(name="Sakura")
    condition = Condition.objects.get(pk=clip.condition_id)
    extra = {"HTTP_RANGE": range_header} if range_header else {}
    # PNG bytes named .svg, then SVG bytes named .png (a file that slipped through).
    for name in (condition.character_reference.name, condition.image.name):
        Condition.objects.filter(pk=condition.pk).update(character_reference=name)
        image = CharacterImage.objects.create(
            character=character, image=name, image_sha256=name, width=1, height=1
        )
        from_clip = lead.get(f"/media/clip/{clip.pk}/character", **extra)
        from_gallery = lead.get(f"/media/character/{image.pk}", **extra)
        assert from_gallery.status_code == from_clip.status_code == (206 if range_header else 200)
        served = {h: from_gallery.get(h) for h in SERVED_HEADERS}
        assert served == {h: from_clip.get(h) for h in SERVED_HEADERS}, name
        assert served["Content-Security-Policy"] == "sandbox", name
        assert served["X-Content-Type-Options"] == "nosniff", name
        if served["Content-Type"] == "application/octet-stream":
            assert served["Content-Disposition"].startswith("attachment"), name
        assert b"".join(from_gallery.streaming_content) == b"".join(from_clip.streaming_content)
    assert from_clip["Content-Type"] == "application/octet-stream"  # the SVG, last


def test_absurd_range_headers_are_answered_not_crashed(stored_clip):
    clip, browser = stored_clip
    url = f"/media/clip/{clip.pk}/video"
    size = 256 * 40
    huge = "9" * 5000
    past_end = browser.get(url, HTTP_RANGE=f"bytes={huge}-")
    assert past_end.status_code == 416 and past_end["Content-Range"] == f"bytes */{size}"
    assert past_end["Content-Security-Policy"] == "sandbox"
    open_end = browser.get(url, HTTP_RANGE=f"bytes=10-{huge}")
    assert (
        open_end.status_code == 206 and open_end["Content-Range"] == f"bytes 10-{size - 1}/{size}"
    )
    assert len(b"".join(open_end.streaming_content)) == size - 10
    suffix = browser.get(url, HTTP_RANGE=f"bytes=-{huge}")
    assert suffix.status_code == 206 and len(b"".join(suffix.streaming_content)) == size
    for ignored in ("bytes=9-3", "bytes=x-y", "pages=1-2", "bytes=-"):
        whole = browser.get(url, HTTP_RANGE=ignored)
        assert whole.status_code == 200 and len(b"".join(whole.streaming_content)) == size
    assert browser.get(url, HTTP_RANGE="bytes=-0").status_code == 416
