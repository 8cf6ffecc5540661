"""Per-round guidelines: safe Markdown, leads' example clips from rated clips, who may edit,
and when the drawer opens by itself for an annotator."""

import pytest

from annotation.models import GuidelineExample, RoundGuidelines
from annotation.selectors.guidelines import example_candidates, round_guidelines
from annotation.services.guidelines import (
    GuidelineError,
    add_example,
    mark_guidelines_seen,
    render_markdown,
    save_guidelines,
    should_show_guidelines,
)
from tests.conftest import client_for, make_user
from tests.factories import make_ready_clips, make_round
from tests.lead_data import rate

pytestmark = pytest.mark.django_db


def test_markdown_is_rendered_and_html_is_escaped():
    html = render_markdown(
        "## Motion\n\n- **large** action\n- [ref](https://example.org/a)\n\n"
        '<script>alert(1)</script>\n\n<img src=x onerror="alert(2)">\n\n[x](javascript:alert(3))'
    )
    assert "<h2>Motion</h2>" in html and "<strong>large</strong>" in html
    assert '<a href="https://example.org/a">ref</a>' in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html and "&lt;img" in html
    assert 'href="javascript:' not in html


def test_save_guidelines_limits_and_replaces(lead):
    round_ = make_round("g1")
    save_guidelines(round_id=round_.pk, text="first\r\nline", updated_by=lead)
    save_guidelines(round_id=round_.pk, text="second", updated_by=lead)
    assert RoundGuidelines.objects.get(round=round_).text == "second"
    with pytest.raises(GuidelineError, match="limited to 50000"):
        save_guidelines(round_id=round_.pk, text="x" * 50_001)
    assert RoundGuidelines.objects.get(round=round_).text == "second"  # nothing lost
    with pytest.raises(GuidelineError, match="does not exist"):
        save_guidelines(round_id=round_.pk + 999, text="x")


def test_examples_come_from_rated_clips_of_the_round(lead, annotator):
    round_, other_round = make_round("g1"), make_round("g2")
    rated, unrated = make_ready_clips(round_, 2)
    (elsewhere,) = make_ready_clips(other_round, 1)
    rate(rated, annotator, 3, visual_motion=2)

    example = add_example(
        round_id=round_.pk, clip_id=rated.pk, dimension="visual_motion", score=2, note=" hair only "
    )
    assert example.note == "hair only"
    # Choosing the same clip for the same dimension again updates it (no duplicate).
    add_example(round_id=round_.pk, clip_id=rated.pk, dimension="visual_motion", score=1)
    assert GuidelineExample.objects.get().score == 1
    for kwargs, message in [
        ({"clip_id": unrated.pk}, "no ratings yet"),
        ({"clip_id": elsewhere.pk}, "not in this round"),
        ({"clip_id": 10**9}, "does not exist"),
        ({"dimension": "sound"}, "unknown dimension"),
        ({"score": 6}, "from 1 to 5"),
        ({"score": True}, "from 1 to 5"),
    ]:
        args = {
            "round_id": round_.pk,
            "clip_id": rated.pk,
            "dimension": "visual_appeal",
            "score": 2,
        }
        with pytest.raises(GuidelineError, match=message):
            add_example(**{**args, **kwargs})
    assert GuidelineExample.objects.count() == 1

    shown = round_guidelines(round_.pk)
    assert [d["key"] for d in shown["dimensions"]] == ["visual_motion"]
    assert shown["dimensions"][0]["examples"][0]["poster_url"] == f"/media/clip/{rated.pk}/poster"


def test_candidates_are_clips_whose_mean_rounds_to_the_score_most_agreed_first(annotator):
    round_ = make_round("g1")
    a, b, c = make_ready_clips(round_, 3)
    other = make_user("otto", "annotator")
    rate(a, annotator, 3, visual_motion=2)
    rate(a, other, 3, visual_motion=2)  # mean 2, std 0
    rate(b, annotator, 3, visual_motion=1)
    rate(b, other, 3, visual_motion=3)  # mean 2, std 1
    rate(c, annotator, 3, visual_motion=4)  # mean 4: not a 2
    found = example_candidates(round_id=round_.pk, dimension="visual_motion", score=2)
    assert [row["clip_id"] for row in found] == [a.pk, b.pk]
    assert example_candidates(round_id=round_.pk, dimension="visual_motion", score=5) == []


def test_drawer_opens_on_first_visit_and_after_a_change(lead, annotator):
    round_ = make_round("g1")
    assert not should_show_guidelines(round_id=round_.pk, annotator=annotator)  # nothing to show
    save_guidelines(round_id=round_.pk, text="Read me", updated_by=lead)
    assert should_show_guidelines(round_id=round_.pk, annotator=annotator)
    mark_guidelines_seen(round_id=round_.pk, annotator=annotator)
    assert not should_show_guidelines(round_id=round_.pk, annotator=annotator)
    save_guidelines(round_id=round_.pk, text="Read me again", updated_by=lead)
    assert should_show_guidelines(round_id=round_.pk, annotator=annotator)

    c = client_for(annotator)
    page = c.get(f"/annotate/{round_.pk}/")
    assert b'data-show-guidelines="1"' in page.content and b"Read me again" in page.content
    assert c.post(f"/api/rounds/{round_.pk}/guidelines/seen/").status_code == 200
    assert b'data-show-guidelines="0"' in c.get(f"/annotate/{round_.pk}/").content
    assert c.post(f"/api/rounds/{round_.pk + 99}/guidelines/seen/").status_code == 404


def test_lead_edits_guidelines_and_examples_in_the_browser_pages(lead, annotator):
    round_ = make_round("g1")
    (clip,) = make_ready_clips(round_, 1)
    rate(clip, annotator, 3, visual_motion=2)
    c = client_for(lead)
    url = f"/lead/rounds/{round_.pk}/guidelines/"

    preview = c.post(url, {"text": "**bold** <b>raw</b>", "action": "preview"})
    assert preview.status_code == 200
    assert b"<strong>bold</strong> &lt;b&gt;raw&lt;/b&gt;" in preview.content
    assert not RoundGuidelines.objects.exists()  # a preview saves nothing
    saved = c.post(url, {"text": "**bold**", "action": "save"})
    assert saved.status_code == 302 and RoundGuidelines.objects.get().text == "**bold**"
    too_long = c.post(url, {"text": "x" * 50_001, "action": "save"})
    assert too_long.status_code == 400 and b"limited to 50000" in too_long.content
    assert RoundGuidelines.objects.get().text == "**bold**"

    picker = c.get(url, {"dimension": "visual_motion", "score": 2})
    assert f"Clip {clip.pk} · mean 2.00".encode() in picker.content
    added = c.post(
        f"{url}examples/",
        {"clip_id": clip.pk, "dimension": "visual_motion", "score": "2", "note": "hair only"},
    )
    assert added.status_code == 302
    example = GuidelineExample.objects.get()
    assert (example.clip_id, example.score, example.note) == (clip.pk, 2, "hair only")
    bad = c.post(
        f"{url}examples/", {"clip_id": "x", "dimension": "visual_motion", "score": "2"}, follow=True
    )
    assert b"Example not added: the clip id must be a number" in bad.content
    assert GuidelineExample.objects.count() == 1
    c.post(f"{url}examples/{example.pk}/remove/")
    assert not GuidelineExample.objects.exists()
    assert f"{url}".encode() in c.get(f"/lead/rounds/{round_.pk}/").content  # linked from settings

    # Annotators may read (and watch examples) but never edit.
    annotator_client = client_for(annotator)
    assert annotator_client.get(url).status_code == 403
    assert annotator_client.post(url, {"text": "mine"}).status_code == 403
    assert RoundGuidelines.objects.get().text == "**bold**"


def test_annotators_may_watch_example_clips_they_never_rated(lead, annotator, isolated_media):
    round_ = make_round("g1")
    (clip,) = make_ready_clips(round_, 1)
    other = make_user("otto", "annotator")
    rate(clip, other, 2)
    c = client_for(annotator)
    assert c.get(f"/media/clip/{clip.pk}/poster").status_code == 403
    add_example(round_id=round_.pk, clip_id=clip.pk, dimension="visual_appeal", score=2)
    (isolated_media / "posters").mkdir(exist_ok=True)
    (isolated_media / clip.poster.name).write_bytes(b"jpeg")
    assert c.get(f"/media/clip/{clip.pk}/poster").status_code == 200
