"""/me/: an annotator's clips rated, median time, agreement with the consensus (the other
raters' mean) and gold accuracy per dimension, checked against hand arithmetic."""

import pytest
from django.test import Client

from annotation.selectors.me import calibration
from annotation.services.gold import set_gold_reference
from tests.conftest import make_user
from tests.factories import make_ready_clips, make_round, scores
from tests.lead_data import rate

pytestmark = pytest.mark.django_db


def test_calibration_against_hand_arithmetic(annotator, lead):
    round_ = make_round("me", ratings_per_clip=3)
    a, b, c, gold = make_ready_clips(round_, 4)
    bob, cat = make_user("bob", "annotator"), make_user("cat", "annotator")
    # Motion: mine 5 vs others' mean 3 (a), mine 2 vs others' mean 2 (b): diffs +2, 0.
    rate(a, annotator, 3, seconds=4, visual_motion=5)
    rate(a, bob, 3, visual_motion=2)
    rate(a, cat, 3, visual_motion=4)
    rate(b, annotator, 3, seconds=8, visual_motion=2)
    rate(b, bob, 3, visual_motion=2)
    rate(c, annotator, 3, seconds=30)  # nobody else rated c: not compared
    set_gold_reference(clip_id=gold.pk, scores=scores(3, visual_appeal=5), created_by=lead)
    rate(gold, annotator, 3, seconds=20, visual_appeal=1)  # appeal 1 vs 5: a miss

    result = calibration(annotator=annotator)
    assert result.clips_rated == 4
    assert result.median_seconds == 14.0  # median of 4, 8, 20, 30
    assert result.compared_clips == 2 and result.gold_clips == 1
    by_key = {d.key: d for d in result.dimensions}
    motion = by_key["visual_motion"]
    assert motion.compared == 2
    assert motion.bias == pytest.approx(1.0)  # (+2 + 0) / 2
    assert motion.mean_abs_diff == pytest.approx(1.0)
    assert motion.within_one == pytest.approx(0.5)
    smooth = by_key["visual_smoothness"]
    assert (smooth.bias, smooth.within_one) == (0.0, 1.0)
    assert by_key["visual_appeal"].gold_accuracy == 0.0  # |1 - 5| > 1
    assert by_key["visual_motion"].gold_accuracy == 1.0  # 3 vs 3
    assert by_key["visual_appeal"].gold_count == 1

    # Bob's figures are his own: his view of clip a compares with annotator and cat (5, 4).
    bobs = {d.key: d for d in calibration(annotator=bob).dimensions}
    assert bobs["visual_motion"].bias == pytest.approx(((2 - 4.5) + (2 - 2)) / 2)


def test_corrections_count_once_with_their_new_scores(annotator):
    from annotation.services.ratings import correct_rating

    round_ = make_round("me2")
    (clip,) = make_ready_clips(round_, 1)
    bob = make_user("bob", "annotator")
    mine = rate(clip, annotator, 1)
    rate(clip, bob, 4)
    correct_rating(rating_id=mine.pk, annotator=annotator, scores=scores(4))
    result = calibration(annotator=annotator)
    assert result.clips_rated == 1
    assert all(d.bias == 0.0 and d.within_one == 1.0 for d in result.dimensions)


def test_me_page_shows_the_figures_and_needs_the_annotator_role(annotator):
    client = Client()
    client.force_login(annotator)
    empty = client.get("/me/")
    assert empty.status_code == 200 and b"You have not rated any clips yet." in empty.content

    round_ = make_round("me3")
    a, b = make_ready_clips(round_, 2)
    bob = make_user("bob", "annotator")
    rate(a, annotator, 4, seconds=6)
    rate(a, bob, 2)
    rate(b, annotator, 3, seconds=12)
    page = client.get("/me/").content.decode()
    assert '<b id="me-clips">2</b>' in page
    assert '<b id="me-median">9.0 s</b>' in page
    # Every dimension: 4 vs bob's 2 on one compared clip: bias +2, never within one point.
    assert page.count('<td class="within">0%</td>') == 6
    assert "more lenient than others" in page

    nobody = make_user("nora")
    other = Client()
    other.force_login(nobody)
    assert other.get("/me/").status_code == 403
    assert Client().get("/me/").status_code == 302  # to the login page
