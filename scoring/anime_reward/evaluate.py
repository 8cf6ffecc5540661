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
