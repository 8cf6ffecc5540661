"""Grouped train/test split (METHOD.md): no condition image and no prompt in both splits.

Clips are joined into groups (connected components) when they share a condition image OR a
prompt, so a group never straddles the split. Groups are then ordered by a hash of the seed and
the group's key, and taken into the test split while that brings the test share closer to the
requested fraction. Nothing depends on the order of the input rows: the same items, fraction and
seed always give the same split. Pure Python; no Django.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

TRAIN, TEST = "train", "test"


@dataclass(frozen=True)
class SplitItem:
    """One unit to place: a clip (weight 1) or a condition standing for ``weight`` clips."""

    key: Hashable
    image_sha256: str
    prompt_sha256: str
    weight: int = 1


@dataclass(frozen=True)
class Placement:
    split: str  # "train" or "test"
    group: str  # stable id of the connected component (independent of the seed)


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, node: str) -> str:
        parent = self.parent.setdefault(node, node)
        root = node
        while parent != root:
            root, parent = parent, self.parent[parent]
        # Path compression keeps later finds O(1)-ish.
        while self.parent[node] != root:
            self.parent[node], node = root, self.parent[node]
        return root

    def union(self, a: str, b: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            # The smaller key wins so the root (and so the group key) never depends on row order.
            if root_b < root_a:
                root_a, root_b = root_b, root_a
            self.parent[root_b] = root_a


def _rank(seed: int, group_key: str) -> str:
    return hashlib.sha256(f"{seed}:{group_key}".encode()).hexdigest()


def place_items(
    items: Iterable[SplitItem], *, test_fraction: float, seed: int
) -> dict[Hashable, Placement]:
    """Place each item in train or test, grouped by shared image or prompt; see module docstring."""
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must be within [0, 1], got {test_fraction!r}")
    forest = _UnionFind()
    item_nodes: dict[Hashable, tuple[str, int]] = {}
    for item in items:
        if item.key in item_nodes:
            raise ValueError(f"duplicate split item key {item.key!r}")
        image_node, prompt_node = f"i:{item.image_sha256}", f"p:{item.prompt_sha256}"
        forest.union(image_node, prompt_node)
        item_nodes[item.key] = (image_node, item.weight)

    group_weight: dict[str, int] = {}
    for image_node, weight in item_nodes.values():
        root = forest.find(image_node)
        group_weight[root] = group_weight.get(root, 0) + weight

    target = test_fraction * sum(group_weight.values())
    test_groups: set[str] = set()
    test_weight = 0
    for root in sorted(group_weight, key=lambda r: _rank(seed, r)):
        weight = group_weight[root]
        # Take a group only when it brings the test share strictly closer to the target.
        if abs(test_weight + weight - target) < abs(test_weight - target):
            test_groups.add(root)
            test_weight += weight

    placements: dict[Hashable, Placement] = {}
    group_ids: dict[str, str] = {}
    for key, (image_node, _weight) in item_nodes.items():
        root = forest.find(image_node)
        group_id = group_ids.get(root)
        if group_id is None:
            group_id = group_ids[root] = hashlib.sha256(root.encode()).hexdigest()[:16]
        placements[key] = Placement(TEST if root in test_groups else TRAIN, group_id)
    return placements
