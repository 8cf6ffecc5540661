"""End to end in real headless Chromium: log in, watch the clip play, rate with the keyboard, next clip."""

import os

import pytest

from annotation.models import Rating
from annotation.services.ingest import import_manifest_file
from tests.browser import chromium_page, login
from tests.conftest import make_user
from tests.factories import make_round, write_manifest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
os.environ.setdefault(
    "DJANGO_ALLOW_ASYNC_UNSAFE", "true"
)  # Playwright's sync API runs an event loop

PLAYING = "(v) => v && !v.hidden && !v.paused && v.readyState >= 3 && v.currentTime > 0"


def test_annotator_rates_with_keyboard_and_next_clip_starts(live_server, tmp_path, video_factory):
    round_ = make_round("browser-round")
    rows = [
        {
            "video": str(video_factory(f"c{i}.mp4", seconds=2, fps=12, size="160x120", source=src)),
            "prompt": f"prompt {i}",
            "round": round_.name,
        }
        for i, src in enumerate(["testsrc2", "smptebars"])
    ]
    import_manifest_file(path=write_manifest(tmp_path / "m.jsonl", rows))
    make_user("kate", "annotator")

    with chromium_page() as page:
        login(page, live_server.url, "kate", "pw-kate")
        page.goto(f"{live_server.url}/annotate/{round_.pk}/")
        page.wait_for_function(
            f"() => ({PLAYING})(document.querySelector('video:not([hidden])'))", timeout=15000
        )
        first_clip = page.get_attribute("#annotator", "data-clip-id")
        # Wait until the next clip is leased and preloading in the hidden player.
        page.wait_for_function(
            "() => document.querySelector('video[hidden]').dataset.clipId", timeout=10000
        )

        page.keyboard.press("Enter")  # nothing scored yet: refused, scores kept
        assert "missing" in page.inner_text("#status")
        for key in "543215":
            page.keyboard.press(key)
        page.keyboard.press("ArrowLeft")  # focus stays on the last dimension: 5 -> 4
        page.keyboard.press("ArrowUp")  # back to image consistency ...
        page.keyboard.press("ArrowRight")  # ... and raise it from 1 to 2
        page.keyboard.press("Enter")

        page.wait_for_function(
            f"() => document.querySelector('#annotator').dataset.clipId !== '{first_clip}'",
            timeout=10000,
        )
        page.wait_for_function(
            f"() => ({PLAYING})(document.querySelector('video:not([hidden])'))", timeout=10000
        )
        assert "You rated 1" in page.inner_text("#progress")

    rating = Rating.objects.get()
    assert rating.clip_id == int(first_clip)
    assert rating.scores() == {
        "visual_smoothness": 5,
        "visual_motion": 4,
        "visual_appeal": 3,
        "text_consistency": 2,
        "image_consistency": 2,
        "character_consistency": 4,
    }
    assert rating.seconds_spent > 0
