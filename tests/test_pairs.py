"""Preference pairs from scored candidates (pure function) and their JSONL export."""

import pytest

from training.alignment.pairs import Candidate, build_pairs, read_pairs_jsonl, write_pairs_jsonl


def c(clip_id, condition_id, reward):
    return Candidate(
        clip_id=clip_id,
        condition_id=condition_id,
        reward=reward,
        video=f"/v/{clip_id}.mp4",
        prompt=f"prompt {condition_id}",
        first_frame=f"/f/{condition_id}.png",
    )


def test_best_and_worst_of_each_condition_with_both_rewards():
    pairs = build_pairs([c(1, 10, 0.5), c(2, 10, 0.9), c(3, 10, 0.2), c(4, 11, 0.4), c(5, 11, 0.6)])
    assert [
        (p.condition_id, p.winner_clip_id, p.loser_clip_id, p.winner_reward, p.loser_reward)
        for p in pairs
    ] == [
        (10, 2, 3, 0.9, 0.2),
        (11, 5, 4, 0.6, 0.4),
    ]
    assert pairs[0].winner_video == "/v/2.mp4" and pairs[0].loser_video == "/v/3.mp4"
    assert pairs[0].prompt == "prompt 10" and pairs[0].first_frame == "/f/10.png"


def test_conditions_with_one_candidate_or_no_difference_give_no_pair():
    assert build_pairs([c(1, 10, 0.5)]) == []
    assert build_pairs([c(1, 10, 0.5), c(2, 10, 0.5)]) == []


def test_pairs_under_the_gap_threshold_are_skipped():
    candidates = [c(1, 10, 0.50), c(2, 10, 0.55), c(3, 11, 0.2), c(4, 11, 0.8)]
    assert [p.condition_id for p in build_pairs(candidates, min_gap=0.1)] == [11]
    assert [p.condition_id for p in build_pairs(candidates, min_gap=0.05)] == [
        10,
        11,
    ]  # 0.05 is not under 0.05
    with pytest.raises(ValueError, match="min_gap"):
        build_pairs(candidates, min_gap=-0.1)


def test_ties_are_broken_by_clip_id_whatever_the_input_order():
    a = build_pairs([c(7, 1, 0.9), c(3, 1, 0.9), c(5, 1, 0.1), c(4, 1, 0.1)])
    b = build_pairs([c(4, 1, 0.1), c(5, 1, 0.1), c(3, 1, 0.9), c(7, 1, 0.9)])
    assert a == b
    assert (a[0].winner_clip_id, a[0].loser_clip_id) == (3, 5)


def test_rewards_outside_unit_interval_are_rejected():
    with pytest.raises(ValueError, match="outside"):
        build_pairs([c(1, 1, 1.5), c(2, 1, 0.1)])


def test_jsonl_round_trip(tmp_path):
    pairs = build_pairs([c(1, 10, 0.5), c(2, 10, 0.9), c(4, 11, 0.4), c(5, 11, 0.6)])
    path = tmp_path / "out" / "pairs.jsonl"
    assert write_pairs_jsonl(pairs, path) == 2
    assert len(path.read_text().splitlines()) == 2
    assert read_pairs_jsonl(path) == pairs
    (tmp_path / "bad.jsonl").write_text('{"nope": 1}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        read_pairs_jsonl(tmp_path / "bad.jsonl")
