"""Agreement and annotator statistics against small hand-worked examples."""

import pytest

from annotation.selectors.agreement import (
    agreement_by_round,
    alpha_from_arrays,
    annotator_table,
    load_rating_arrays,
)
from annotation.services.gold import set_gold_reference
from labelhub.dimensions import DIMENSION_KEYS
from tests.conftest import make_user
from tests.lead_data import make_clip, make_condition, make_round, rate


def test_alpha_interval_and_ordinal_hand_worked(db):
    # Two raters, two clips: (1, 2) and (4, 5); four pairable values {1, 2, 4, 5}.
    # Interval: D_o = (2*1^2 + 2*1^2) / 4 = 1; D_e = 2*(1+9+16+4+9+1) / (4*3) = 80/12;
    #           alpha = 1 - 12/80 = 0.85.
    # Ordinal:  delta(c,k) = (sum of n_g for g in c..k - (n_c + n_k)/2)^2 with n = 1,1,0,1,1:
    #           d(1,2)=1, d(4,5)=1, d(1,4)=4, d(1,5)=9, d(2,4)=1, d(2,5)=4;
    #           D_o = 4/4 = 1, D_e = 2*20/12 = 40/12; alpha = 1 - 12/40 = 0.7.
    round_ = make_round()
    a, b = make_user("a", "annotator"), make_user("b", "annotator")
    one, two = (make_clip(round_, make_condition(f"i{n}", f"p{n}")) for n in (1, 2))
    rate(one, a, 1)
    rate(one, b, 2)
    rate(two, a, 4)
    rate(two, b, 5)
    single = make_clip(round_, make_condition("i3", "p3"))
    rate(single, a, 3)  # a clip with one rating has no pairs: it must not change alpha

    arrays = load_rating_arrays(round_ids=[round_.pk])
    interval = alpha_from_arrays(arrays, level="interval")
    ordinal = alpha_from_arrays(arrays, level="ordinal")
    assert interval == {k: pytest.approx(0.85) for k in DIMENSION_KEYS}
    assert ordinal == {k: pytest.approx(0.7) for k in DIMENSION_KEYS}
    by_round = agreement_by_round([round_.pk])
    assert by_round[round_.pk]["interval"]["visual_motion"] == pytest.approx(0.85)

    # Perfect agreement is 1; no pairable values is undefined (None), not a number.
    other = make_round("other")
    c = make_clip(other, make_condition("i4", "p4"))
    assert alpha_from_arrays(load_rating_arrays(round_ids=[other.pk]))["visual_appeal"] is None
    rate(c, a, 2)
    rate(c, b, 2)
    d = make_clip(other, make_condition("i5", "p5"))
    rate(d, a, 4)
    rate(d, b, 4)
    assert alpha_from_arrays(load_rating_arrays(round_ids=[other.pk]))["visual_appeal"] == 1.0


def test_annotator_table_leave_one_out_hand_worked(db):
    # Clip 1: A=5, B=C=D=3.  Clip 2: A=4, B=C=D=2 (every dimension alike).
    # A's leave-one-out consensus is 3 then 2: deviation +2 twice -> leniency +2 (flagged lenient).
    # B's consensus is (5+3+3)/3 = 11/3 then 8/3: deviation -2/3 twice -> leniency -2/3 (< 0.75).
    # Everyone's scores move with the consensus: correlation 1.
    round_ = make_round()
    users = {n: make_user(n, "annotator") for n in "ABCD"}
    one, two = (make_clip(round_, make_condition(f"i{n}", f"p{n}")) for n in (1, 2))
    for name, first, second, seconds in (
        ("A", 5, 4, (10, 20)),
        ("B", 3, 2, (4, 8)),
        ("C", 3, 2, (4, 8)),
        ("D", 3, 2, (6, 6)),
    ):
        rate(one, users[name], first, seconds=seconds[0])
        rate(two, users[name], second, seconds=seconds[1])
    table = {row.username: row for row in annotator_table(round_ids=[round_.pk])}
    assert table["A"].count == 2 and table["A"].median_seconds == 15
    assert table["A"].leniency == pytest.approx(2.0)
    assert table["B"].leniency == pytest.approx(-2 / 3)
    assert table["A"].correlation == pytest.approx(1.0)
    assert table["A"].compared == 12
    assert table["A"].flags == ["lenient"]
    assert table["B"].flags == [] and table["D"].median_seconds == 6
    assert list(table)[0] == "A"  # flagged annotators come first
    assert table["A"].gold_accuracy is None


def test_gold_accuracy_counts_dimensions_within_one_point(db, lead):
    round_ = make_round()
    a, b = make_user("a", "annotator"), make_user("b", "annotator")
    gold = make_clip(round_, make_condition("g", "g"))
    set_gold_reference(clip_id=gold.pk, scores=dict.fromkeys(DIMENSION_KEYS, 3), created_by=lead)
    # a: 3,4,5,1,2,3 -> within one of 3 on 3,4,2,3 = 4 of 6; b: all 5 -> 0 of 6.
    rate(gold, a, [3, 4, 5, 1, 2, 3])
    rate(gold, b, 5)
    table = {row.username: row for row in annotator_table(round_ids=[round_.pk])}
    assert table["a"].gold_count == 1 and table["a"].gold_accuracy == pytest.approx(4 / 6)
    assert table["b"].gold_accuracy == 0.0 and "gold misses" in table["b"].flags
