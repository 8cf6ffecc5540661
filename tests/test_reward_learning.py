"""All six AnimeReward dimensions learn their synthetic rule (bench/reward_learning.py on a smaller
budget, with the bench's settings): held-out Spearman per dimension, and fine-tuning beats frozen
random features on text and character, the two rules frozen random features cannot see.

Thresholds: the held-out split is every 4th of CLIPS clips (32). With no learning, Spearman on 32
clips is about N(0, 1/sqrt(31)), sd 0.18, so LEARNS (0.7) is 3.9 sd above chance. Measured at this
budget (seed 0; text trains 70 epochs, its bench override): the lowest is 0.79 (character), text
0.87; frozen text 0.37, frozen character 0.35, so fine-tuning must win by BEATS_FROZEN (0.3;
measured 0.50 and 0.44). The full bench (256 clips, 40 epochs, text 70, 3 seeds) reaches >= 0.86
on every dimension and seed.
"""

import sys
from pathlib import Path

import pytest

from labelhub.dimensions import DIMENSION_KEYS
from scoring.anime_reward.config import RewardTrainConfig
from scoring.anime_reward.synthetic import make_gallery, make_rule_clips
from scoring.anime_reward.train import train_reward
from tests.reward_data import reward_items

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
from reward_learning import bench_config  # noqa: E402

CLIPS, EPOCHS, SEED, LEARNS, BEATS_FROZEN = 128, 30, 0, 0.7, 0.3


pytestmark = pytest.mark.usefixtures("two_threads")  # tests/conftest.py


def _config(**overrides) -> RewardTrainConfig:
    return bench_config(preset="tiny", epochs=EPOCHS, seed=SEED, **overrides)


@pytest.mark.slow
def test_all_six_dimensions_learn_and_fine_tuning_beats_frozen_on_text_and_character(tmp_path):
    gallery = make_gallery(tmp_path / "gallery")
    items = reward_items(make_rule_clips(tmp_path / "clips", CLIPS, seed=SEED))
    assert sum(i.split == "test" for i in items) == CLIPS // 4
    # the held-out clips cover every gallery character (a held-out set of one character would
    # test recognising a character never seen as a clip's own)
    assert len({i.character_id for i in items if i.split == "test"}) == len(gallery)

    tuned = train_reward(items, _config(finetune=True), tmp_path / "tuned", gallery=gallery)
    spearman = {key: tuned.metrics[key]["spearman"] for key in DIMENSION_KEYS}
    assert all(s is not None and s >= LEARNS for s in spearman.values()), spearman

    frozen = train_reward(
        items,
        _config(finetune=False, dimensions=("text_consistency", "character_consistency")),
        tmp_path / "frozen",
        gallery=gallery,
    )
    # random frozen CLIP features do not see the square's colour under the character's stripes,
    # nor random BLIP features which stripes are whose (the bench over 3 seeds: text frozen
    # 0.12-0.21 against fine-tuned 0.83-0.91, character 0.19-0.34 against 0.87-0.94)
    for key in ("text_consistency", "character_consistency"):
        untuned = frozen.metrics[key]["spearman"] or 0.0
        print(f"{key}: fine-tuned {spearman[key]:.3f}, frozen {untuned:.3f}")
        assert spearman[key] > untuned + BEATS_FROZEN, (key, spearman[key], untuned)
