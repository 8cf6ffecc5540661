"""Preference pairs from scored candidates (METHOD.md), pure Python: no Django, no torch.

For each condition with at least two scored candidates, the winner is the candidate with the
highest overall reward and the loser the one with the lowest; both rewards are kept (GAPO weighs
each pair by their gap). Pairs whose reward difference is under ``min_gap`` are skipped: they
carry more rating noise than preference. A pair always needs a strictly positive difference.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Candidate:
    """One scored clip of one condition; ``reward`` is the overall reward in [0, 1]."""

    clip_id: int
    condition_id: int
    reward: float
    video: str = ""
    prompt: str = ""
    first_frame: str = ""


@dataclass(frozen=True)
class Pair:
    """Winner and loser of one condition, with what the trainer needs to read them."""

    condition_id: int
    winner_clip_id: int
    loser_clip_id: int
    winner_reward: float
    loser_reward: float
    winner_video: str = ""
    loser_video: str = ""
    prompt: str = ""
    first_frame: str = ""

    @property
    def reward_difference(self) -> float:
        return self.winner_reward - self.loser_reward


def build_pairs(candidates: Iterable[Candidate], *, min_gap: float = 0.0) -> list[Pair]:
    """Best-vs-worst pair per condition, skipping conditions whose reward difference < ``min_gap``.

    Ties on the reward are broken by clip id (the lower id wins, the higher id loses), so the
    result does not depend on the order candidates come in. Pairs come sorted by condition id.
    """
    if min_gap < 0:
        raise ValueError(f"min_gap must be >= 0; got {min_gap}")
    by_condition: dict[int, list[Candidate]] = defaultdict(list)
    for candidate in candidates:
        if not 0.0 <= candidate.reward <= 1.0:
            raise ValueError(
                f"clip {candidate.clip_id}: reward {candidate.reward} is outside [0, 1]"
            )
        by_condition[candidate.condition_id].append(candidate)

    pairs = []
    for condition_id in sorted(by_condition):
        group = by_condition[condition_id]
        if len(group) < 2:
            continue
        ranked = sorted(group, key=lambda c: (-c.reward, c.clip_id))
        winner, loser = ranked[0], ranked[-1]
        difference = winner.reward - loser.reward
        if difference <= 0 or difference < min_gap:
            continue
        pairs.append(
            Pair(
                condition_id=condition_id,
                winner_clip_id=winner.clip_id,
                loser_clip_id=loser.clip_id,
                winner_reward=winner.reward,
                loser_reward=loser.reward,
                winner_video=winner.video,
                loser_video=loser.video,
                prompt=winner.prompt,
                first_frame=winner.first_frame,
            )
        )
    return pairs


def write_pairs_jsonl(pairs: Iterable[Pair], path: str | Path) -> int:
    """Write one JSON object per pair; returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for pair in pairs:
            handle.write(json.dumps(asdict(pair), sort_keys=True) + "\n")
            count += 1
    return count


def read_pairs_jsonl(path: str | Path) -> list[Pair]:
    """Read pairs written by ``write_pairs_jsonl`` (the trainer's input)."""
    pairs = []
    with Path(path).open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                pairs.append(Pair(**json.loads(line)))
            except (TypeError, json.JSONDecodeError) as error:
                raise ValueError(f"{path}:{line_number}: not a pair record ({error})") from error
    return pairs
