"""A toy round for the tiny preset: synthetic conditions and rewards computable exactly.

Test and bench code (the loop-aligns test, bench/gapo_vs_dpo.py): round 0 from the base generator,
rewards = mean brightness of the decoded MP4 in [0, 1], pairs, training, round 1 with the same
seeds. No Django.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scoring.anime_reward.video import read_video_frames, write_image
from training.alignment.pairs import Candidate
from training.alignment.sampling import GeneratedCandidate, GenerationCondition

TOY_WORDS = "a girl boy cat dog runs jumps dances waves in the rain sea city forest street".split()


def mean_brightness(video: str | Path) -> float:
    """Mean pixel value of every decoded frame, in [0, 1]: a reward we can compute exactly."""
    return float(read_video_frames(video).astype(np.float64).mean() / 255.0)


def synthetic_conditions(
    out_dir: str | Path, *, count: int, seed: int, size: int = 32
) -> list[GenerationCondition]:
    """``count`` conditions: random first-frame images and short prompts, written under ``out_dir``."""
    rng = np.random.default_rng(seed)
    conditions = []
    for index in range(count):
        image = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        path = write_image(image, Path(out_dir) / f"condition-{index}.png")
        conditions.append(
            GenerationCondition(str(index), " ".join(rng.choice(TOY_WORDS, 5)), str(path))
        )
    return conditions


def scored_candidates(candidates: list[GeneratedCandidate]) -> list[Candidate]:
    """Generated candidates scored by mean brightness, ready for ``build_pairs``."""
    return [
        Candidate(
            clip_id=i,
            condition_id=int(c.condition_key),
            reward=mean_brightness(c.video),
            video=c.video,
            prompt=c.prompt,
            first_frame=c.first_frame,
        )
        for i, c in enumerate(candidates)
    ]
