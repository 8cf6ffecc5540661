"""Synthetic clips as AnimeReward training items, for the reward tests and the bench scripts.

Kept apart from ``tests/toy.py`` (which conftest imports): the trainer's module loads
transformers and accelerate, seconds that only the tests that train should pay."""

from __future__ import annotations

from scoring.anime_reward.train import RewardItem


def reward_items(clips, *, test_every: int = 4, clips_per_condition: int = 1) -> list[RewardItem]:
    """Synthetic clips (``make_labelled_clips`` or ``make_rule_clips``) as training items: clip
    ``i`` belongs to condition ``i // clips_per_condition`` and every ``test_every``-th condition
    is held out whole (the grouped split, never by clip)."""
    items = []
    for c in clips:
        condition = c.index // clips_per_condition
        items.append(
            RewardItem(
                clip_id=c.index,
                video_path=str(c.video_path),
                condition_image_path=str(c.condition_image_path),
                prompt=c.prompt,
                labels=c.labels,
                split="test" if condition % test_every == 0 else "train",
                group=str(condition),
                condition_id=condition,
                character_id=getattr(c, "character_id", None),  # rule clips name one
            )
        )
    return items
