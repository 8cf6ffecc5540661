"""Lead-only pages and APIs: dashboards, exports (list, create, download), clip inspector."""

import pytest

from annotation.models import ExportSnapshot
from annotation.services.exports import create_snapshot
from annotation.services.gold import set_gold_reference
from labelhub.dimensions import DIMENSION_KEYS
from tests.conftest import make_user
from tests.lead_data import make_clip, make_condition, make_round, rate

LEAD_URLS = ["/lead/", "/lead/exports/", "/lead/pairwise/", "/api/lead/exports/"]
LOGIN = "/accounts/login/?next="


@pytest.fixture
def round_with_ratings(db):
    # Disagreements are listed above 1.0 std; the maximum of 3 ratings keeps adaptive overlap
    # from raising any clip's target, so every rated clip is complete.
    round_ = make_round("alpha round", disagreement_std=1.0, max_ratings_per_clip=3)
    raters = [make_user(f"r{i}", "annotator") for i in range(3)]
    clips = []
    for i in range(4):
        condition = make_condition(f"i{i}", f"p{i}")
        for source in ("ground_truth", "hailuo"):
            clip = make_clip(round_, condition, source)
            for j, rater in enumerate(raters):
                rate(clip, rater, 1 + (i + j * (2 if source == "hailuo" else 0)) % 5)
            clips.append(clip)
    set_gold_reference(clip_id=clips[0].pk, scores=dict.fromkeys(DIMENSION_KEYS, 1))
    make_clip(round_, make_condition("u", "u"))  # untouched
    return round_, clips


@pytest.mark.parametrize("url", LEAD_URLS)
def test_lead_pages_refuse_annotators_and_anonymous(round_with_ratings, client, url):
    anonymous = client.get(url)
    if url.startswith("/api/"):  # an API client gets an answer, never a login page
        assert anonymous.status_code == 403
        assert anonymous.json() == {"detail": "Authentication credentials were not provided."}
    else:  # a browser is sent to log in, and back here after
        assert anonymous.status_code == 302 and anonymous["Location"] == f"{LOGIN}{url}"
    client.force_login(make_user("just-annotating", "annotator"))
    refused = client.get(url)
    assert refused.status_code == 403
    if not url.startswith("/api/"):  # a page, with the site's navigation, naming the role
        html = refused.content.decode()
        assert "You need the lead role." in html
        assert "just-annotating" in html and 'class="topbar"' in html


def test_dashboard_shows_progress_agreement_annotators_and_disagreements(
    round_with_ratings, client, lead
):
    round_, clips = round_with_ratings
    client.force_login(lead)
    response = client.get(f"/lead/?round={round_.pk}")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<svg" in html and "Krippendorff" in html
    progress = response.context["progress"][0]
    assert (progress.complete, progress.in_progress, progress.untouched) == (8, 0, 1)
    table = {row.username: row for row in response.context["annotators"]}
    assert {
        name: (row.count, row.gold_count, row.gold_accuracy) for name, row in table.items()
    } == {name: (8, 1, 1.0) for name in ("r0", "r1", "r2")}
    assert response.context["source_means"][0]["source"] == "ground_truth"
    disagreeing = {d["clip_id"] for d in response.context["disagreements"]}
    assert disagreeing and all(c.source_name == "hailuo" for c in clips if c.pk in disagreeing)
    first = sorted(disagreeing)[0]
    assert f"/lead/clips/{first}/" in html
    clip_page = client.get(f"/lead/clips/{first}/")
    assert clip_page.status_code == 200 and len(clip_page.context["ratings"]) == 3
    assert client.get(f"/api/lead/rounds/{round_.pk}/agreement/").json()["alpha"]["interval"]


def test_exports_listed_created_and_downloaded_by_leads_only(
    round_with_ratings, client, lead, django_capture_on_commit_callbacks
):
    client.force_login(lead)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/lead/exports/",
            {"test_fraction": 0.25, "seed": 3},
            content_type="application/json",
        )
    assert response.status_code == 202
    snapshot = ExportSnapshot.objects.get(pk=response.json()["id"])
    assert snapshot.status == "ready" and snapshot.row_counts["clips"] == 8
    listed = client.get("/api/lead/exports/").json()
    assert listed[0]["content_hash"] == snapshot.content_hash and listed[0]["params"]["seed"] == 3
    assert (
        client.post(
            "/api/lead/exports/", {"test_fraction": 2}, content_type="application/json"
        ).status_code
        == 400
    )

    download = client.get(f"/lead/exports/{snapshot.pk}/labels_csv")
    assert download.status_code == 200
    body = b"".join(download.streaming_content).decode()
    assert body.splitlines()[0].startswith("clip_id,round_id,round,")
    assert len(body.strip().splitlines()) == 9
    assert str(snapshot.content_hash[:12]) in client.get("/lead/exports/").content.decode()

    client.force_login(make_user("peeker", "annotator"))
    assert client.get(f"/lead/exports/{snapshot.pk}/labels_csv").status_code == 403
    assert client.get(f"/api/lead/exports/{snapshot.pk}/").status_code == 403


def test_shell_export_command(round_with_ratings, capsys):
    from django.core.management import call_command

    call_command("export_labels", "--test-fraction", "0.25", "--seed", "3", "--include-ratings")
    out = capsys.readouterr().out
    snapshot = ExportSnapshot.objects.get()
    assert (
        snapshot.status == "ready"
        and f"snapshot {snapshot.pk}" in out
        and snapshot.content_hash in out
    )
    again = create_snapshot(round_ids=None, test_fraction=0.25, seed=3, include_ratings=True)
    assert (
        again.content_hash == snapshot.content_hash
    )  # same inputs, same hash from shell or service


def test_the_home_page_leads_each_role_to_its_pages(db, client):
    """A lead or an admin who is not also an annotator used to get an empty "Hello" page."""
    pages = {
        "annotator": ["/me/"],
        "lead": ["/lead/", "/lead/import/", "/lead/exports/", "/lead/team/", "/scoreboard/"],
        "admin": ["/runs/"],
    }
    for role in pages:
        client.force_login(make_user(f"home-{role}", role))
        html = client.get("/").content.decode()
        body = html[html.index("<main") :]  # the page, not the navigation bar
        links = {link.split('"')[0] for link in body.split('href="')[1:]}
        for other, wanted in pages.items():
            if other == role or (role == "admin" and other == "lead"):  # admins are leads too
                assert all(any(link.startswith(w) for link in links) for w in wanted), (role, links)
            elif other != "annotator":
                assert not any(link.startswith(w) for link in links for w in wanted), (role, other)
