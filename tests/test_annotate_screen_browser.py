"""The annotate page in real headless Chromium as an annotator uses it: the whole task on one
screen at 1366x768 and 1920x1080, thumbnails that enlarge, compare mode, a correction from the
history panel, undo, and the guidelines drawer.

Set LABELHUB_SCREENSHOTS=<folder> to keep a screenshot of each state.
"""

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from annotation.models import ClipLabel, GuidelinesSeen, Rating
from annotation.services.assignment import lease_next_clip
from annotation.services.guidelines import add_example, save_guidelines
from annotation.services.ingest import import_manifest_file
from annotation.services.ratings import submit_rating
from tests.browser import chromium_page, login
from tests.conftest import make_user
from tests.factories import make_round, scores, write_manifest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PLAYING = "(v) => v && !v.hidden && !v.paused && v.readyState >= 3 && v.currentTime > 0"
VISIBLE_PLAYING = f"() => ({PLAYING})(document.querySelector('video:not([hidden])'))"
# A long prompt, as real I2V prompts are: it must not push the scores below the fold.
LONG_PROMPT = (
    "A silver-haired swordswoman in a long crimson coat turns toward the camera on a windy "
    "rooftop at dusk, her hair and coat flowing, lanterns swaying in the background, petals "
    "drifting across the frame, the city lights flickering on below while clouds race past the "
    "setting sun; she raises her blade slowly and smiles."
)
SIZES = [(1366, 768), (1920, 1080)]


def _shot(page, name: str) -> None:
    folder = os.environ.get("LABELHUB_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def _character_png(path: Path) -> Path:
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=240x360",
            "-frames:v",
            "1",
            str(path),
        ],
        check=True,
    )
    return path


@pytest.fixture
def rated_round(tmp_path, video_factory):
    """A round of three real clips (one with a character reference) and an annotator."""
    round_ = make_round("screen-round")
    character = _character_png(tmp_path / "character.png")
    rows = []
    for i, src in enumerate(["testsrc2", "smptebars", "rgbtestsrc"]):
        row = {
            "video": str(video_factory(f"c{i}.mp4", seconds=2, fps=12, size="320x240", source=src)),
            "prompt": f"{LONG_PROMPT} (clip {i})",
            "round": round_.name,
            "character_reference": str(character),
        }
        rows.append(row)
    import_manifest_file(path=write_manifest(tmp_path / "m.jsonl", rows))
    make_user("kate", "annotator")
    return round_


def _box_inside(page, selector: str, width: int, height: int) -> list[dict]:
    boxes = page.eval_on_selector_all(
        selector,
        """els => els.map(e => { const r = e.getBoundingClientRect();
            return {x: r.left, y: r.top, right: r.right, bottom: r.bottom, w: r.width, h: r.height,
                    hidden: e.closest('[hidden]') !== null}; })""",
    )
    assert boxes, f"{selector} not found"
    for box in boxes:
        assert not box["hidden"], f"{selector} is hidden"
        assert box["w"] > 0 and box["h"] > 0, f"{selector} has no size: {box}"
        assert box["x"] >= 0 and box["y"] >= 0, f"{selector} starts outside the viewport: {box}"
        assert box["right"] <= width and box["bottom"] <= height, (
            f"{selector} ends outside the {width}x{height} viewport: {box}"
        )
    return boxes


def test_whole_task_on_one_screen_at_both_sizes(live_server, rated_round):
    with chromium_page() as page:
        login(page, live_server.url, "kate", "pw-kate")
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.goto(f"{live_server.url}/annotate/{rated_round.pk}/")
            page.wait_for_function(VISIBLE_PLAYING, timeout=15000)
            page.wait_for_function(
                "() => document.getElementById('character-image').complete"
                " && document.getElementById('character-image').naturalWidth > 0"
            )
            # Nothing to scroll to: the page is exactly the viewport.
            scroll = page.evaluate(
                "() => [document.scrollingElement.scrollHeight, document.scrollingElement.scrollWidth]"
            )
            _shot(page, f"annotate-{width}x{height}")
            assert scroll[0] <= height and scroll[1] <= width, scroll

            (video,) = _box_inside(page, "video:not([hidden])", width, height)
            assert video["h"] >= 0.4 * height, (
                f"video squeezed to {video['h']}px at {width}x{height}"
            )
            for selector in [
                "#btn-play", "#btn-back", "#btn-fwd", "#speed", "#btn-compare", "#prompt",
                "#thumb-condition", "#thumb-character", "#btn-submit", "#btn-skip", "#btn-flag",
                "#btn-undo",
            ]:  # fmt: skip
                _box_inside(page, selector, width, height)
            assert len(_box_inside(page, "fieldset.dimension", width, height)) == 6
            assert len(_box_inside(page, "fieldset.dimension .score", width, height)) == 30
            anchors = _box_inside(page, "fieldset.dimension .anchor", width, height)
            assert len(anchors) == 18  # 1, 3 and 5 of six dimensions
            # The whole prompt is readable in its box (it scrolls there only if it must).
            prompt_fits = page.eval_on_selector(
                "#prompt", "e => e.scrollHeight <= e.clientHeight + 1"
            )
            assert prompt_fits, f"the prompt is cut at {width}x{height}"
            # Condition and character reference are thumbnails, not columns.
            thumb = _box_inside(page, "#thumb-character img", width, height)[0]
            assert thumb["h"] <= 80

            # I enlarges both images; I again puts them back.
            page.keyboard.press("i")
            big = _box_inside(page, "#lightbox-character", width, height)[0]
            _box_inside(page, "#lightbox-condition", width, height)
            assert big["h"] > 3 * thumb["h"]
            _shot(page, f"annotate-{width}x{height}-images")
            page.keyboard.press("i")
            assert page.is_hidden("#lightbox")
            # Hover enlarges too.
            page.hover("#thumb-condition")
            assert page.is_visible("#lightbox")
            page.mouse.move(width / 2, 5)
            assert page.is_hidden("#lightbox")

            # C: the clip's first frame beside the current frame, both on screen.
            page.keyboard.press("c")
            first = _box_inside(page, "#compare-image", width, height)[0]
            (current,) = _box_inside(page, "video:not([hidden])", width, height)
            assert first["right"] <= current["x"] + 1, (first, current)
            # Side by side: centred on the same line.
            centre = (first["y"] + first["bottom"]) / 2
            assert abs(centre - (current["y"] + current["bottom"]) / 2) < 2
            page.wait_for_function(
                "() => document.getElementById('compare-image').naturalWidth === 320"
            )
            _shot(page, f"annotate-{width}x{height}-compare")
            page.keyboard.press("c")
            assert page.is_hidden("#compare-pane")


def _rate(page, keys: str) -> str:
    """Score the clip on screen with the keyboard, submit, and wait for the next clip."""
    clip_id = page.get_attribute("#annotator", "data-clip-id")
    for key in keys:
        page.keyboard.press(key)
    page.keyboard.press("Enter")
    page.wait_for_function(
        f"() => document.querySelector('#annotator').dataset.clipId !== '{clip_id}'", timeout=10000
    )
    return clip_id


def test_correction_from_history_and_undo(live_server, rated_round, settings):
    settings.LABELHUB_UNDO_WINDOW_SECONDS = 60
    with chromium_page() as page:
        page.set_viewport_size({"width": 1366, "height": 768})
        login(page, live_server.url, "kate", "pw-kate")
        page.goto(f"{live_server.url}/annotate/{rated_round.pk}/")
        page.wait_for_function(VISIBLE_PLAYING, timeout=15000)
        first = _rate(page, "333333")
        second_clip = page.get_attribute("#annotator", "data-clip-id")
        page.keyboard.press("5")  # a score in progress on the second clip survives the detour

        # H: the history lists the rating with its thumbnail; Revise reopens it.
        page.keyboard.press("h")
        item = page.wait_for_selector("#history-list li[data-rating-id]", timeout=5000)
        assert f"Clip {first}" in item.inner_text()
        assert "3 3 3 3 3 3" in item.inner_text()
        page.wait_for_function("() => document.querySelector('#history-list img').naturalWidth > 0")
        _shot(page, "history-1366x768")
        item.query_selector("button.revise").click()
        page.wait_for_function(
            f"() => document.querySelector('#video-r').dataset.clipId === '{first}'"
            f" && ({PLAYING})(document.querySelector('#video-r'))",
            timeout=10000,
        )
        assert page.is_visible("#revise-banner") and page.is_hidden("#history")
        checked = page.eval_on_selector_all("input:checked", "els => els.map(e => e.value)")
        assert checked == ["3"] * 6  # the old scores are back on screen
        page.keyboard.press("ArrowDown")
        page.keyboard.press("1")  # motion: 3 -> 1
        _shot(page, "revising-1366x768")
        page.keyboard.press("Enter")
        page.wait_for_selector("#revise-banner", state="hidden")
        assert "Correction saved" in page.inner_text("#status")
        # Back on the clip the annotator was rating, with its score in progress.
        assert page.get_attribute("#annotator", "data-clip-id") == second_clip
        assert page.eval_on_selector("video:not([hidden])", "v => v.dataset.clipId") == second_clip
        assert page.eval_on_selector_all("input:checked", "els => els.map(e => e.value)") == ["5"]

        # U right after a submit reopens it; Esc goes back without changing anything.
        for key in "44444":
            page.keyboard.press(key)
        page.keyboard.press("Enter")
        page.wait_for_function(
            f"() => document.querySelector('#annotator').dataset.clipId !== '{second_clip}'"
        )
        page.keyboard.press("u")
        page.wait_for_selector("#revise-banner", state="visible")
        assert page.inner_text("#revise-clip") == second_clip
        page.keyboard.press("Escape")
        assert page.is_hidden("#revise-banner")
        page.keyboard.press("u")
        page.wait_for_selector("#revise-banner", state="visible")
        page.keyboard.press("ArrowUp")
        page.keyboard.press("2")  # character consistency: 4 -> 2
        page.keyboard.press("Enter")
        page.wait_for_selector("#revise-banner", state="hidden")

    old = Rating.objects.get(clip_id=int(first), is_current=False)
    new = Rating.objects.get(clip_id=int(first), is_current=True)
    assert new.supersedes_id == old.pk
    assert old.scores() == scores(3)
    assert new.scores() == scores(3, visual_motion=1)
    assert ClipLabel.objects.get(clip_id=int(first)).visual_motion_mean == 1.0
    second = Rating.objects.get(clip_id=int(second_clip), is_current=True)
    assert second.scores() == scores(4, visual_smoothness=5, character_consistency=2)
    assert second.supersedes is not None
    assert Rating.objects.filter(annotator__username="kate", is_current=True).count() == 2


def test_undo_window_closes(live_server, rated_round, settings):
    settings.LABELHUB_UNDO_WINDOW_SECONDS = 1
    with chromium_page() as page:
        login(page, live_server.url, "kate", "pw-kate")
        page.goto(f"{live_server.url}/annotate/{rated_round.pk}/")
        page.wait_for_function(VISIBLE_PLAYING, timeout=15000)
        _rate(page, "222222")
        page.wait_for_timeout(1500)
        assert page.is_disabled("#btn-undo")
        page.keyboard.press("u")
        page.wait_for_function(
            "() => document.getElementById('status').textContent.includes('Nothing to undo')"
        )
        assert page.is_hidden("#revise-banner")
    assert Rating.objects.get().scores() == scores(2)


def test_guidelines_drawer_opens_on_first_visit_and_with_question_mark(live_server, rated_round):
    lead = make_user("lena", "lead")
    other = make_user("otto", "annotator")
    clip = lease_next_clip(round_id=rated_round.pk, annotator=other).clip
    submit_rating(clip_id=clip.pk, annotator=other, scores=scores(2), idempotency_key=uuid.uuid4())
    save_guidelines(
        round_id=rated_round.pk,
        text="# Read first\n\nMotion is about the **main character**.\n\n<script>window.pwned = 1</script>",
        updated_by=lead,
    )
    add_example(
        round_id=rated_round.pk,
        clip_id=clip.pk,
        dimension="visual_motion",
        score=2,
        note="only the hair moves",
        created_by=lead,
    )
    with chromium_page() as page:
        page.set_viewport_size({"width": 1366, "height": 768})
        login(page, live_server.url, "kate", "pw-kate")
        page.goto(f"{live_server.url}/annotate/{rated_round.pk}/")
        page.wait_for_selector("#guidelines", state="visible")  # first visit: it opens by itself
        drawer = _box_inside(page, "#guidelines", 1366, 768)[0]
        assert drawer["h"] == 768
        assert page.inner_text("#guidelines .markdown strong") == "main character"
        assert page.inner_text("#guidelines .markdown h1") == "Read first"
        assert "<script>" in page.inner_text("#guidelines .markdown")  # shown as text
        assert page.evaluate("() => window.pwned") is None
        example = page.wait_for_selector(".examples[data-dimension=visual_motion] .example")
        assert "2 for visual motion: only the hair moves" in example.inner_text()
        page.wait_for_function("() => document.querySelector('.example img').naturalWidth > 0")
        _shot(page, "guidelines-1366x768")
        example.query_selector(".example-play").click()
        page.wait_for_function(f"() => ({PLAYING})(document.querySelector('.example video'))")
        page.keyboard.press("Escape")
        page.wait_for_selector("#guidelines", state="hidden")
        page.wait_for_function(VISIBLE_PLAYING, timeout=15000)  # rating starts after reading
        page.wait_for_timeout(300)  # the seen mark is a fire-and-forget POST
        assert GuidelinesSeen.objects.filter(annotator__username="kate").exists()

        page.reload()
        page.wait_for_function(VISIBLE_PLAYING, timeout=15000)
        assert page.is_hidden("#guidelines")  # seen: not opened again
        page.keyboard.press("?")
        page.wait_for_selector("#guidelines", state="visible")
        page.keyboard.press("?")
        page.wait_for_selector("#guidelines", state="hidden")
        # Keys work for rating again once the drawer is closed.
        page.keyboard.press("4")
        assert page.eval_on_selector_all("input:checked", "els => els.map(e => e.value)") == ["4"]
