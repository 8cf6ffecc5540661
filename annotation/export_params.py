"""What an export snapshot is asked for (rounds, split, seed, formats), apart from the writers in
``annotation.export_files``: pages and services name these without loading pyarrow and numpy, which
only a build needs."""

from __future__ import annotations

from dataclasses import dataclass

FORMATS = ("jsonl", "csv", "parquet")
SPLIT_RULE = (
    "grouped: clips sharing a condition image or a prompt form one group (connected components); "
    "groups are ordered by sha256(seed:group) and taken into test while that brings the test share "
    "of clips closer to test_fraction"
)


@dataclass(frozen=True)
class ExportParams:
    round_ids: list[int]
    test_fraction: float
    seed: int
    include_ratings: bool

    def as_json(self) -> dict:
        return {
            "round_ids": self.round_ids,
            "test_fraction": self.test_fraction,
            "seed": self.seed,
            "include_ratings": self.include_ratings,
            "split_rule": SPLIT_RULE,
        }
