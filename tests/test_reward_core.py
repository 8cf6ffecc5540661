"""AnimeReward's ML core without Django: metrics by hand, frame sampling, and learning known rules."""

import dataclasses
import math

import pytest
import torch

from labelhub.dimensions import DIMENSION_KEYS
from scoring.anime_reward.evaluate import (
    evaluate_dimension,
    mean_absolute_error,
    pairwise_accuracy,
    spearman,
)
from scoring.anime_reward.frames import (
    ClipDecodeError,
    ClipSpec,
    iter_decoded_batches,
    read_clip_frames,
    sample_frame_indices,
)
from scoring.anime_reward.models import AnimeReward
from scoring.anime_reward.synthetic import (
    RULE_DIMENSIONS,
    make_labelled_clips,
    render_frames,
)
from scoring.anime_reward.train import RewardItem, RewardTrainConfig, train_reward
from scoring.anime_reward.video import write_video
from tests.reward_data import reward_items

pytestmark = pytest.mark.usefixtures("two_threads")  # tests/conftest.py


# --- metrics, checked by hand --------------------------------------------------------------------


def test_pairwise_accuracy_counts_only_same_condition_pairs_with_a_clear_human_gap():
    human = [1.0, 0.5, 0.0, 0.9, 0.6]
    predicted = [0.9, 0.2, 0.4, 0.1, 0.3]
    conditions = ["a", "a", "a", "b", "c"]
    # Condition a: (0,1) gap 0.5 model agrees; (0,2) gap 1.0 agrees; (1,2) gap 0.5, model says 0.2 < 0.4: wrong.
    # Clips 3 and 4 have different conditions, so they form no pair.
    accuracy, pairs = pairwise_accuracy(predicted, human, conditions)
    assert pairs == 3
    assert accuracy == pytest.approx(2 / 3)


def test_pairwise_accuracy_skips_small_human_gaps_and_gives_ties_half():
    # On the 1-5 scale 0.5 is the threshold: 0.1 apart in reward (0.4 on 1-5) is not a pair.
    accuracy, pairs = pairwise_accuracy([0.3, 0.3, 0.9], [0.5, 0.6, 0.0], ["x", "x", "x"])
    # Pairs: (0,2) gap 0.5 model wrong; (1,2) gap 0.6 model wrong; (0,1) gap 0.1 skipped.
    assert pairs == 2 and accuracy == 0.0
    accuracy, pairs = pairwise_accuracy([0.4, 0.4], [0.0, 1.0], ["x", "x"])
    assert (accuracy, pairs) == (0.5, 1)
    assert pairwise_accuracy([0.1], [0.2], ["x"]) == (None, 0)


def test_correlations_and_mae_on_a_small_example():
    human = [0.0, 0.25, 0.5, 1.0]
    assert spearman([0.1, 0.2, 0.3, 0.4], human) == pytest.approx(1.0)
    assert spearman([0.4, 0.3, 0.2, 0.1], human) == pytest.approx(-1.0)
    assert mean_absolute_error([0.1, 0.25, 0.3, 1.0], human) == pytest.approx(
        (0.1 + 0 + 0.2 + 0) / 4
    )
    metrics = evaluate_dimension([0.5, 0.5, 0.5, 0.5], human, ["a"] * 4)
    assert metrics["pearson"] is None and metrics["spearman"] is None  # constant prediction
    assert metrics["mae"] == pytest.approx((0.5 + 0.25 + 0 + 0.5) / 4)
    # Kendall: one swapped pair of 6 -> (5 - 1) / 6.
    assert evaluate_dimension([0.1, 0.3, 0.2, 0.4], human, ["a"] * 4)["kendall"] == pytest.approx(
        4 / 6
    )


# --- frames ----------------------------------------------------------------------------------------


def test_frame_sampling_takes_24_uniform_frames_from_the_first_144():
    assert sample_frame_indices(10) == list(range(10))
    indices = sample_frame_indices(1000)
    assert len(indices) == 24 and indices[0] == 0 and indices[-1] == 143
    assert all(b > a for a, b in zip(indices, indices[1:], strict=False))
    assert sample_frame_indices(48, max_frames=24)[:3] == [0, 2, 4]


def test_decoding_reads_sampled_frames_and_reports_broken_files(tmp_path):
    frames = render_frames(brightness=1.0, speed=1.0, drift=0.0, frames=40, size=64)
    video = write_video(frames, tmp_path / "long.mp4", fps=8)
    decoded = read_clip_frames(video, size=32)
    assert decoded.shape == (24, 3, 32, 32) and decoded.dtype == torch.uint8
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(video.read_bytes()[:300])
    with pytest.raises(ClipDecodeError):
        read_clip_frames(broken, size=32)

    specs = [
        ClipSpec(1, str(video), str(tmp_path / "missing.png"), "p"),
        ClipSpec(2, str(broken), "", "p"),
    ]
    batch = next(iter_decoded_batches(specs, size=32, batch_size=2, workers=1))
    assert batch.inputs is None and set(batch.errors) == {1, 2}


# --- learning ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_preset_learns_the_rules_on_held_out_clips(tmp_path):
    clips = make_labelled_clips(tmp_path / "clips", 96, seed=2)
    items = reward_items(clips, clips_per_condition=2)
    progress = []
    result = train_reward(
        items,
        RewardTrainConfig(epochs=60, decode_workers=2, seed=2),
        tmp_path / "model",
        on_progress=lambda step, total, metrics, message: progress.append((step, total)),
    )

    assert result.test_clips == 24 and result.train_clips == 72 and not result.skipped
    for key in RULE_DIMENSIONS:
        assert result.metrics[key]["spearman"] >= 0.8, (key, result.metrics[key])
        assert result.metrics[key]["pairwise_accuracy"] >= 0.7, (key, result.metrics[key])
    for key in DIMENSION_KEYS:
        losses = result.losses[key]
        assert len(losses) == 60
        assert losses[-1] < losses[0]
    for key in RULE_DIMENSIONS:  # where there is signal the loss falls a lot
        assert result.losses[key][-1] < 0.5 * result.losses[key][0]
    assert set(result.metrics) == {*DIMENSION_KEYS, "overall"}
    assert progress[-1][0] == progress[-1][1] and all(
        a[0] <= b[0] for a, b in zip(progress, progress[1:], strict=False)
    )

    # The checkpoint (safetensors + config.json per dimension) scores the test clips as in training.
    for key in DIMENSION_KEYS:
        assert (tmp_path / "model" / key / "head.safetensors").exists()
        assert (tmp_path / "model" / key / "config.json").exists()
    reloaded = AnimeReward.load(tmp_path / "model")
    test_items = [i for i in items if i.split == "test"][:8]
    batch = next(
        iter_decoded_batches([i.spec for i in test_items], size=64, batch_size=8, workers=2)
    )
    scores = reloaded.score_batch(batch.inputs)
    by_clip = {row["clip_id"]: row["predicted"] for row in result.evaluation}
    for row, item in enumerate(test_items):
        for key in (*DIMENSION_KEYS, "overall"):
            assert scores[key][row].item() == pytest.approx(by_clip[item.clip_id][key], abs=1e-4)
        assert scores["overall"][row].item() == pytest.approx(
            sum(scores[k][row].item() for k in DIMENSION_KEYS) / 6, abs=1e-6
        )


def test_untrained_motion_reward_is_the_zero_shot_prompt_probability(tmp_path):
    """Before training, motion = softmax over the two motion prompts (METHOD.md), exactly."""
    clips = make_labelled_clips(tmp_path, 2, seed=3)
    model = AnimeReward.from_preset("tiny")
    batch = next(
        iter_decoded_batches(
            [i.spec for i in reward_items(clips, clips_per_condition=2)],
            size=64,
            batch_size=2,
            workers=1,
        )
    )
    values, mask = model.dimensions["visual_motion"].features(batch.inputs, {})
    logit_gap = values[:, 0, 0]
    two_prompt_softmax = torch.softmax(
        torch.stack([logit_gap, torch.zeros_like(logit_gap)], -1), -1
    )[:, 0]
    scores = model.score_batch(batch.inputs)
    assert torch.allclose(scores["visual_motion"], two_prompt_softmax, atol=1e-6)
    assert all(0 <= v <= 1 for key in scores for v in scores[key].tolist())


def test_train_config_validates_with_clear_errors():
    with pytest.raises(ValueError, match="preset"):
        RewardTrainConfig(preset="huge")
    with pytest.raises(ValueError, match="epochs"):
        RewardTrainConfig(epochs=0)
    with pytest.raises(ValueError, match="dimensions"):
        RewardTrainConfig(dimensions=("beauty",))
    with pytest.raises(ValueError, match="learning_rate"):
        RewardTrainConfig(learning_rate=-1)
    with pytest.raises(ValueError, match="split"):
        RewardItem(
            clip_id=1,
            video_path="v",
            condition_image_path="c",
            prompt="p",
            labels=dict.fromkeys(DIMENSION_KEYS, 3.0),
            split="val",
        )
    # NaN compares false with everything: a "< 0" check would let it through to the optimiser.
    with pytest.raises(ValueError, match="learning_rate must be positive, got nan"):
        RewardTrainConfig(learning_rate=math.nan)
    with pytest.raises(ValueError, match="encoder_learning_rate must be positive, got nan"):
        RewardTrainConfig(encoder_learning_rate=math.nan)
    help_text = RewardTrainConfig.help()
    assert list(help_text) == [f.name for f in dataclasses.fields(RewardTrainConfig)]
    assert all(help_text.values()), [name for name, text in help_text.items() if not text]
