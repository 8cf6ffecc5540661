"""A real Chromium judges a pair with the keyboard: T (tie), then A, then Enter."""

import random

import pytest
from playwright.sync_api import sync_playwright

from annotation.models import PairwiseJudgement
from annotation.services.pairwise import create_pairwise_tasks
from tests.conftest import make_user
from tests.lead_data import make_clip, make_condition, make_round

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_keyboard_pairwise_judgement(live_server):
    round_ = make_round()
    condition = make_condition("img", "a cat jumps")
    make_clip(round_, condition, "ground_truth")
    make_clip(round_, condition, "ckpt-1", source_kind="policy")
    (task,) = create_pairwise_tasks(
        source_a="ckpt-1", source_b="ground_truth", rng=random.Random(0)
    )
    make_user("judy", "annotator")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{live_server.url}/accounts/login/?next=/pairwise/")
            page.fill("input[name=username]", "judy")
            page.fill("input[name=password]", "pw-judy")
            page.press("input[name=password]", "Enter")
            page.wait_for_url(f"{live_server.url}/pairwise/")
            page.wait_for_selector("#task:not([hidden])")
            assert page.get_attribute("#task", "data-task-id") == str(task.pk)
            assert page.inner_text("#prompt") == "a cat jumps"
            page.keyboard.press("t")
            assert page.get_attribute("#choose-tie", "aria-pressed") == "true"
            page.keyboard.press("a")  # changed my mind: the left clip
            assert page.get_attribute("#choose-left", "aria-pressed") == "true"
            assert page.get_attribute("#choose-tie", "aria-pressed") == "false"
            page.keyboard.press("Enter")
            page.wait_for_selector("text=No pairs left to judge")
        finally:
            browser.close()

    judgement = PairwiseJudgement.objects.get(task=task)
    assert judgement.judge.username == "judy"
    assert judgement.choice == ("a" if task.a_on_left else "b")  # left mapped back to its clip
