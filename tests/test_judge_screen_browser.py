"""The judge page in real headless Chromium: the whole task on one screen at 1366x768 and
1920x1080 (both clips, one player, the condition image and character reference, the overall and
six per-dimension choices), both clips under one control, and a judgement made from the keyboard
alone (focus moves on after each choice) that reaches the database on the canonical sides.

Set LABELHUB_SCREENSHOTS=<folder> to keep a screenshot of each size.
"""

import random

import pytest

from annotation.models import PairwiseJudgement
from annotation.services.ingest import import_manifest_file
from annotation.services.pairwise import create_pairwise_tasks
from labelhub.dimensions import DIMENSION_KEYS
from tests.browser import chromium_page, login
from tests.conftest import make_user
from tests.factories import make_round, write_manifest
from tests.test_annotate_screen_browser import (
    LONG_PROMPT,
    SIZES,
    _box_inside,
    _character_png,
    _shot,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

BOTH_PLAYING = (
    "() => ['video-left', 'video-right'].every(id => { const v = document.getElementById(id);"
    " return !v.paused && v.readyState >= 3 && v.currentTime > 0; })"
)


@pytest.fixture
def judged_pair(tmp_path, video_factory):
    """Two real clips of one condition (same first frame, prompt and character), one task."""
    round_ = make_round("judge-round")
    character = _character_png(tmp_path / "character.png")
    first_frame = _character_png(tmp_path / "first.png")
    rows = [
        {
            "video": str(
                video_factory(f"{source}.mp4", seconds=2, fps=12, size="320x240", source=pattern)
            ),
            "prompt": LONG_PROMPT,
            "first_frame": str(first_frame),
            "round": round_.name,
            "character_reference": str(character),
            "source": source,
        }
        for source, pattern in (("hailuo", "testsrc2"), ("vidu", "smptebars"))
    ]
    import_manifest_file(path=write_manifest(tmp_path / "m.jsonl", rows))
    (task,) = create_pairwise_tasks(source_a="hailuo", source_b="vidu", rng=random.Random(0))
    make_user("judy", "annotator")
    return task


def test_judge_page_fits_one_screen_and_judges_from_the_keyboard(live_server, judged_pair):
    task = judged_pair
    with chromium_page() as page:
        login(page, live_server.url, "judy", "pw-judy")
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.goto(f"{live_server.url}/pairwise/")
            page.wait_for_selector("#task:not([hidden])")
            page.wait_for_function(BOTH_PLAYING, timeout=15000)
            page.wait_for_function(
                "() => ['condition-image', 'character-image'].every(id =>"
                " document.getElementById(id).complete && document.getElementById(id).naturalWidth > 0)"
            )
            scroll = page.evaluate(
                "() => [document.scrollingElement.scrollHeight, document.scrollingElement.scrollWidth]"
            )
            _shot(page, f"judge-{width}x{height}")
            assert scroll[0] <= height and scroll[1] <= width, scroll
            videos = _box_inside(page, "video", width, height)
            assert len(videos) == 2
            assert all(v["h"] >= 0.3 * height for v in videos), (videos, width, height)
            for selector in [
                "#btn-play", "#btn-back", "#btn-fwd", "#speed", "#scrub", "#prompt",
                "#thumb-condition img", "#thumb-character img", "#submit",
            ]:  # fmt: skip
                _box_inside(page, selector, width, height)
            assert len(_box_inside(page, "fieldset.verdict", width, height)) == 7
            assert len(_box_inside(page, "fieldset.verdict .pick", width, height)) == 21

        # One control for both: pause stops both on the same frame; a frame step moves both.
        page.keyboard.press(" ")
        page.wait_for_function(
            "() => document.getElementById('video-left').paused && document.getElementById('video-right').paused"
        )
        page.keyboard.press(".")
        page.keyboard.press(".")
        page.wait_for_function(
            "() => Math.abs(document.getElementById('video-left').currentTime -"
            " document.getElementById('video-right').currentTime) < 0.06"
        )
        page.keyboard.press("]")
        rates = page.evaluate(
            "() => [document.getElementById('video-left').playbackRate, document.getElementById('video-right').playbackRate]"
        )
        assert rates == [2, 2]
        page.eval_on_selector(
            "#scrub", "e => { e.value = '0.5'; e.dispatchEvent(new Event('input')); }"
        )
        page.wait_for_function(
            "() => { const l = document.getElementById('video-left'), r = document.getElementById('video-right');"
            " return Math.abs(l.currentTime - l.duration / 2) < 0.1 && Math.abs(r.currentTime - l.currentTime) < 0.06; }"
        )

        # Keyboard only: overall A, then the six dimensions; focus moves on after each choice.
        assert page.get_attribute("fieldset.verdict.focused", "data-key") == "overall"
        page.keyboard.press("Enter")  # nothing chosen yet: not sent, focus stays on what is missing
        assert "first" in page.inner_text("#status")
        keys = ["a", "b", "t", "1", "2", "3", "a"]
        for index, key in enumerate(keys):
            page.keyboard.press(key)
            if index + 1 < len(keys):
                expected = ["overall", *DIMENSION_KEYS][index + 1]
                assert page.get_attribute("fieldset.verdict.focused", "data-key") == expected
        # all chosen, focus stays on the last row; one up and change my mind there: a tie
        page.keyboard.press("ArrowUp")
        assert page.get_attribute("fieldset.verdict.focused", "data-key") == "image_consistency"
        page.keyboard.press("t")
        assert (
            page.get_attribute(
                "fieldset.verdict[data-key=overall] .pick[data-side=left]", "aria-pressed"
            )
            == "true"
        )
        page.keyboard.press("Enter")
        page.wait_for_selector("text=No pairs left to judge")

    judgement = PairwiseJudgement.objects.get(task=task)
    canonical = {"left": "a" if task.a_on_left else "b", "right": "b" if task.a_on_left else "a"}
    canonical["tie"] = "tie"
    sides = dict(
        zip(
            ["overall", *DIMENSION_KEYS],
            ["left", "right", "tie", "left", "tie", "right", "left"],
            strict=True,
        )
    )
    sides["image_consistency"] = "tie"
    assert judgement.choice == canonical[sides["overall"]]
    assert judgement.dimension_choices == {k: canonical[sides[k]] for k in DIMENSION_KEYS}
