"""A lead works the model-assisted QA list in a real Chromium: watch a clip, ask for one more
rating, mark one gold; the page says what happened and the database agrees."""

import pytest

from annotation.models import Clip, GoldReference
from labelhub.dimensions import DIMENSION_KEYS
from scoring.models import ClipScore, RewardModel
from tests.browser import chromium_page, login
from tests.conftest import make_user
from tests.lead_data import make_clip, make_condition, make_round, rate


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_lead_acts_on_the_qa_list_in_the_browser(live_server):
    round_ = make_round("qa-round", ratings_per_clip=2, max_ratings_per_clip=3)
    model = RewardModel.objects.create(name="rm-qa", preset="tiny", checkpoint_dir="-")
    rater = make_user("rater", "annotator")
    far, near = (make_clip(round_, make_condition(f"img{i}", f"prompt {i}")) for i in range(2))
    for clip, reward in ((far, 0.95), (near, 0.1)):
        rate(clip, rater, 1)  # humans: 1 everywhere (0.0 on the reward scale)
        ClipScore.objects.create(
            clip=clip, reward_model=model, overall=reward, **dict.fromkeys(DIMENSION_KEYS, reward)
        )
    make_user("lena", "lead")  # password pw-lena
    with chromium_page() as page:
        login(page, live_server.url, "lena", "pw-lena")
        page.goto(f"{live_server.url}/lead/?round={round_.pk}")
        table = page.locator('table.qa[data-dimension="visual_motion"]')
        rows = table.locator("tbody tr")
        assert rows.first.get_attribute("data-clip") == str(far.pk)  # the largest gap first
        assert "0.95" in rows.first.inner_text()

        rows.first.get_by_role("button", name="one more rating").click()
        page.wait_for_url(f"{live_server.url}/lead/?round={round_.pk}")
        assert f"Clip {far.pk} now needs 3 ratings." in page.content()
        assert Clip.objects.get(pk=far.pk).target_ratings == 3

        page.locator(
            f'table.qa[data-dimension="visual_motion"] tr[data-clip="{far.pk}"]'
        ).get_by_role("button", name="set as gold").click()
        page.wait_for_url(f"{live_server.url}/lead/clips/{far.pk}/")
        assert "is a gold clip with the rounded human means" in page.content()
        assert GoldReference.objects.get(clip=far).scores() == dict.fromkeys(DIMENSION_KEYS, 1)

        page.goto(f"{live_server.url}/lead/?round={round_.pk}")
        row = page.locator(f'table.qa[data-dimension="visual_motion"] tr[data-clip="{far.pk}"]')
        assert (
            "gold" in row.inner_text()
            and row.get_by_role("button", name="set as gold").count() == 0
        )
        row.get_by_role("link", name="watch").click()
        page.wait_for_url(f"{live_server.url}/lead/clips/{far.pk}/")
