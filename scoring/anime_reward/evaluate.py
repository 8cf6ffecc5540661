"""Held-out evaluation of AnimeReward against human labels: pure functions of plain sequences.

Predictions and human labels are both on the reward scale [0, 1] (human = (mean - 1) / 4).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from itertools import combinations

import numpy as np
from scipy import stats

# Pairs count only when the humans clearly prefer one clip: 0.5 on the 1-5 scale.
PAIR_MIN_HUMAN_GAP = 0.5 / 4


def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def pearson(predicted: Sequence[float], human: Sequence[float]) -> float | None:
    """Pearson correlation; None when either side is constant or there are fewer than 2 clips."""
    if len(predicted) < 2 or np.ptp(predicted) == 0 or np.ptp(human) == 0:
        return None
    return _finite(stats.pearsonr(predicted, human).statistic)


def spearman(predicted: Sequence[float], human: Sequence[float]) -> float | None:
    if len(predicted) < 2 or np.ptp(predicted) == 0 or np.ptp(human) == 0:
        return None
    return _finite(stats.spearmanr(predicted, human).statistic)


def kendall(predicted: Sequence[float], human: Sequence[float]) -> float | None:
    """Kendall's tau-b (handles ties)."""
    if len(predicted) < 2 or np.ptp(predicted) == 0 or np.ptp(human) == 0:
        return None
    return _finite(stats.kendalltau(predicted, human).statistic)


def mean_absolute_error(predicted: Sequence[float], human: Sequence[float]) -> float | None:
    if not len(predicted):
        return None
    return float(np.mean(np.abs(np.asarray(predicted, float) - np.asarray(human, float))))


def pairwise_accuracy(
    predicted: Sequence[float],
    human: Sequence[float],
    conditions: Sequence,
    *,
    min_human_gap: float = PAIR_MIN_HUMAN_GAP,
) -> tuple[float | None, int]:
    """Share of same-condition clip pairs, with human means at least ``min_human_gap`` apart, that
    the model orders like the humans (a predicted tie counts half). Returns (accuracy, pairs)."""
    by_condition: dict = defaultdict(list)
    for index, condition in enumerate(conditions):
        by_condition[condition].append(index)
    correct, pairs = 0.0, 0
    for indices in by_condition.values():
        for i, j in combinations(indices, 2):
            human_gap = human[i] - human[j]
            if abs(human_gap) < min_human_gap - 1e-12:
                continue
            pairs += 1
            predicted_gap = predicted[i] - predicted[j]
            if predicted_gap == 0:
                correct += 0.5
            elif (predicted_gap > 0) == (human_gap > 0):
                correct += 1
    return (correct / pairs if pairs else None), pairs


def evaluate_dimension(
    predicted: Sequence[float], human: Sequence[float], conditions: Sequence
) -> dict:
    accuracy, pairs = pairwise_accuracy(predicted, human, conditions)
    return {
        "pearson": pearson(predicted, human),
        "spearman": spearman(predicted, human),
        "kendall": kendall(predicted, human),
        "mae": mean_absolute_error(predicted, human),
        "pairwise_accuracy": accuracy,
        "pairs": pairs,
        "clips": len(predicted),
    }


def evaluate_rewards(
    predicted: dict[str, Sequence[float]], human: dict[str, Sequence[float]], conditions: Sequence
) -> dict[str, dict]:
    """Metrics per key of ``predicted`` (six dimensions and ``overall``), same clip order everywhere."""
    return {key: evaluate_dimension(predicted[key], human[key], conditions) for key in predicted}


def evaluate_held_out(
    predicted: dict[str, Sequence[float]], by_id: dict, test_ids: Sequence
) -> tuple[dict[str, dict], list[dict]]:
    """Metrics of ``predicted`` (per key, in ``test_ids`` order) against the held-out items'
    label means, and one row per clip (clip, condition, predicted, human) for evaluation.json.
    Pairs are same-condition clips (an item without a condition id: its group)."""
    human = {key: [by_id[i].targets()[key] for i in test_ids] for key in predicted}
    conditions = [
        by_id[i].condition_id if by_id[i].condition_id is not None else by_id[i].group
        for i in test_ids
    ]
    rows = [
        {
            "clip_id": clip_id,
            "condition_id": conditions[row],
            "predicted": {key: predicted[key][row] for key in predicted},
            "human": {key: human[key][row] for key in human},
        }
        for row, clip_id in enumerate(test_ids)
    ]
    return evaluate_rewards(predicted, human, conditions), rows


# --- accuracy on held-out A/B/tie judgements ---------------------------------------------------


def comparison_accuracy(
    predicted_a: Sequence[float], predicted_b: Sequence[float], choices: Sequence[str]
) -> tuple[float | None, int]:
    """Accuracy without ties: over the judgements that chose a side, the share the model orders
    the same way (a predicted tie counts half). Returns (accuracy, decisive judgements)."""
    correct, n = 0.0, 0
    for a, b, choice in zip(predicted_a, predicted_b, choices, strict=True):
        if choice == "tie":
            continue
        n += 1
        if a == b:
            correct += 0.5
        elif (a > b) == (choice == "a"):
            correct += 1
    return (correct / n if n else None), n


def tie_aware_accuracy(
    predicted_a: Sequence[float], predicted_b: Sequence[float], choices: Sequence[str]
) -> tuple[float | None, int, float | None]:
    """Accuracy with ties, as VideoGen-RewardBench reports it (tie calibration of Deutsch et al.,
    "Ties Matter", 2023): the model calls a pair a tie when its rewards are within ``epsilon``,
    and ``epsilon`` is the threshold that maximises accuracy over all judgements, ties included.
    The calibration makes the figure an upper bound for the model at its best threshold; it is
    comparable between models evaluated the same way. Returns (accuracy, judgements, epsilon)."""
    n = len(choices)
    if not n:
        return None, 0, None
    gap = np.asarray(predicted_a, float) - np.asarray(predicted_b, float)
    human = np.asarray(choices)
    order = np.argsort(np.abs(gap), kind="stable")
    distance, gap, human = np.abs(gap)[order], gap[order], human[order]
    is_tie = human == "tie"
    agrees = ((gap > 0) & (human == "a")) | ((gap < 0) & (human == "b"))
    # Threshold at the k-th smallest distance: the first k+1 pairs are called ties.
    ties_called = np.cumsum(is_tie)  # human ties among the pairs called ties
    sides_after = np.concatenate([np.cumsum(agrees[::-1])[::-1][1:], [0]])
    correct = ties_called + sides_after
    # Thresholds must separate distinct distances: only the last of equal distances counts.
    last = np.append(distance[1:] != distance[:-1], True)
    correct, thresholds = correct[last], distance[last]
    # No pair called a tie (only pairs with an exact zero gap would be; counted as wrong sides).
    none_called = int(agrees.sum())
    best = int(np.argmax(correct))
    if none_called >= correct[best] and distance[0] > 0:
        return none_called / n, n, 0.0
    return float(correct[best]) / n, n, float(thresholds[best])


def evaluate_comparisons(predicted: dict[str, dict], comparisons: Sequence) -> dict[str, dict]:
    """Per dimension key (and ``overall``): accuracy without and with ties on held-out judgements.

    ``predicted``: key -> {clip_id: reward}; ``comparisons``: objects with ``clip_a``, ``clip_b``,
    ``dimension`` and ``choice`` whose clips are all in ``predicted``.
    """
    out = {}
    for key, rewards in predicted.items():
        rows = [c for c in comparisons if c.dimension == key]
        a = [rewards[c.clip_a] for c in rows]
        b = [rewards[c.clip_b] for c in rows]
        choices = [c.choice for c in rows]
        accuracy, decisive = comparison_accuracy(a, b, choices)
        with_ties, judged, epsilon = tie_aware_accuracy(a, b, choices)
        out[key] = {
            "comparison_accuracy": accuracy,
            "comparison_accuracy_ties": with_ties,
            "comparisons": judged,
            "decisive_comparisons": decisive,
            "tie_threshold": epsilon,
        }
    return out
