"""The annotation API and media over HTTP: roles, payloads, errors, Range, schema."""

import uuid

import pytest
from django.test import Client

from annotation.models import Rating
from tests.conftest import client_for, make_user
from tests.factories import make_round, scores, write_manifest

pytestmark = pytest.mark.django_db


@pytest.fixture
def ingested_clip(tmp_path, video_factory, django_capture_on_commit_callbacks):
    from annotation.services.ingest import import_manifest_file

    round_ = make_round("r1")
    video = video_factory(seconds=2, fps=10, size="160x120")
    manifest = write_manifest(
        tmp_path / "m.jsonl", [{"video": str(video), "prompt": "a cat jumps", "round": "r1"}]
    )
    with django_capture_on_commit_callbacks(execute=True):
        batch = import_manifest_file(path=manifest)
    return round_, batch.rows.get().clip


def test_next_submit_flow_and_annotator_never_sees_source_or_labels(ingested_clip, annotator):
    round_, clip = ingested_clip
    c = client_for(annotator)
    resp = c.post(f"/api/rounds/{round_.pk}/next/", {}, content_type="application/json")
    assert resp.status_code == 200
    body = resp.json()
    assert body["clip"]["id"] == clip.pk and body["clip"]["prompt"] == "a cat jumps"
    assert "source_name" not in body["clip"] and "label" not in body["clip"]
    key = str(uuid.uuid4())
    submit = c.post(
        f"/api/clips/{clip.pk}/ratings/",
        {**scores(4), "seconds_spent": 3.5, "idempotency_key": key},
        content_type="application/json",
    )
    assert submit.status_code == 201, submit.content
    again = c.post(
        f"/api/clips/{clip.pk}/ratings/",
        {**scores(4), "seconds_spent": 3.5, "idempotency_key": key},
        content_type="application/json",
    )
    assert again.status_code == 200 and Rating.objects.count() == 1
    assert c.get(f"/api/clips/{clip.pk}/label/").status_code == 403
    assert (
        c.post(f"/api/rounds/{round_.pk}/next/", {}, content_type="application/json").status_code
        == 204
    )


def test_bad_submits_get_clear_errors_and_save_nothing(ingested_clip, annotator):
    round_, clip = ingested_clip
    c = client_for(annotator)
    c.post(f"/api/rounds/{round_.pk}/next/", {}, content_type="application/json")
    bad = c.post(
        f"/api/clips/{clip.pk}/ratings/",
        {**scores(3, visual_appeal=7), "idempotency_key": str(uuid.uuid4())},
        content_type="application/json",
    )
    assert bad.status_code == 400 and "visual_appeal" in bad.json()
    wrong_field = c.post(
        f"/api/clips/{clip.pk}/ratings/",
        {**scores(3), "colour": 1, "idempotency_key": str(uuid.uuid4())},
        content_type="application/json",
    )
    assert wrong_field.status_code == 400 and "colour" in wrong_field.json()["detail"]
    missing = c.post(
        "/api/clips/999999/ratings/",
        {**scores(3), "idempotency_key": str(uuid.uuid4())},
        content_type="application/json",
    )
    assert missing.status_code == 404
    assert not Rating.objects.exists()


def test_roles_guard_endpoints(ingested_clip, lead):
    round_, clip = ingested_clip
    nobody = make_user("nobody")
    assert Client().post(f"/api/rounds/{round_.pk}/next/").status_code == 403
    assert (
        client_for(nobody)
        .post(f"/api/rounds/{round_.pk}/next/", {}, content_type="application/json")
        .status_code
        == 403
    )
    assert client_for(nobody).get(f"/media/clip/{clip.pk}/video").status_code == 403
    lead_client = client_for(lead)
    label = lead_client.get(f"/api/clips/{clip.pk}/label/")
    assert label.status_code == 404  # no ratings yet, but leads may ask
    assert lead_client.get(f"/api/clips/{clip.pk}/").json()["source_name"] == "ground_truth"
    assert client_for(make_user("ann2", "annotator")).get("/api/imports/1/").status_code == 403


def test_media_needs_a_lease_and_supports_range(ingested_clip, annotator):
    round_, clip = ingested_clip
    c = client_for(annotator)
    assert c.get(f"/media/clip/{clip.pk}/video").status_code == 403  # not leased yet
    c.post(f"/api/rounds/{round_.pk}/next/", {}, content_type="application/json")
    full = c.get(f"/media/clip/{clip.pk}/video")
    data = b"".join(full.streaming_content)
    assert (
        full.status_code == 200
        and full["Accept-Ranges"] == "bytes"
        and full["Content-Type"] == "video/mp4"
    )
    part = c.get(f"/media/clip/{clip.pk}/video", HTTP_RANGE="bytes=100-199")
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 100-199/{len(data)}"
    assert b"".join(part.streaming_content) == data[100:200]
    tail = c.get(f"/media/clip/{clip.pk}/video", HTTP_RANGE="bytes=-10")
    assert b"".join(tail.streaming_content) == data[-10:]
    assert (
        c.get(f"/media/clip/{clip.pk}/video", HTTP_RANGE=f"bytes={len(data) + 5}-").status_code
        == 416
    )
    assert c.get(f"/media/clip/{clip.pk}/condition").status_code == 200


def test_import_api_reports_bad_rows(
    tmp_path, lead, video_factory, django_capture_on_commit_callbacks
):
    make_round("r1")
    video = video_factory()
    c = client_for(lead)
    with django_capture_on_commit_callbacks(execute=True):
        resp = c.post(
            "/api/imports/",
            {
                "rows": [
                    {"video": str(video), "prompt": "p", "round": "r1"},
                    {"video": str(tmp_path / "nope.mp4"), "prompt": "p", "round": "r1"},
                ]
            },
            content_type="application/json",
        )
    assert resp.status_code == 202
    report = c.get(f"/api/imports/{resp.json()['id']}/").json()
    assert [r["status"] for r in report["rows"]] == ["ok", "error"]
    assert "not found" in report["rows"][1]["message"]


def test_openapi_schema_lists_the_flow(annotator):
    resp = client_for(annotator).get("/api/schema/")
    text = resp.content.decode()
    assert resp.status_code == 200
    for path in (
        "/api/rounds/{round_id}/next/",
        "/api/clips/{clip_id}/ratings/",
        "/api/clips/{clip_id}/skip/",
        "/api/clips/{clip_id}/flag/",
        "/api/imports/",
    ):
        assert path in text


def test_upload_page_imports_a_manifest_and_shows_the_report(
    tmp_path, lead, annotator, video_factory, django_capture_on_commit_callbacks
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    round_ = make_round("r1")
    video = video_factory()
    manifest = f'{{"video": "{video}", "prompt": "p"}}\n{{"video": "{video}", "prompt": "p", "seed": "x"}}\n'
    assert client_for(annotator).get("/lead/import/").status_code == 403
    c = client_for(lead)
    with django_capture_on_commit_callbacks(execute=True):
        resp = c.post(
            "/lead/import/",
            {"manifest": SimpleUploadedFile("m.jsonl", manifest.encode()), "round_id": round_.pk},
        )
    assert resp.status_code == 302
    page = c.get(resp["Location"]).content.decode()
    assert "1 imported, 1 with errors" in page and "&#x27;seed&#x27; must be an integer" in page
