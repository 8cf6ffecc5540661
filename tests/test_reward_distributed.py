"""AnimeReward training on 2 processes (issue 24): ``accelerate launch`` of 2 gloo ranks on CPU
(``scoring.anime_reward.ranks``) trains the heads 1 process trains with the same global batch, for
the regression and the pairs objectives (dropout on: its draws must not depend on the number of
processes), and encoder fine-tuning, not made exact on several processes, is refused."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from labelhub.ranks import launch_ranks
from scoring.anime_reward.comparisons import Comparison
from scoring.anime_reward.config import RewardTrainConfig
from scoring.anime_reward.ranks import train_reward_on_gpus
from scoring.anime_reward.synthetic import make_labelled_clips
from scoring.anime_reward.train import train_reward
from tests.reward_data import reward_items

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("two_threads")]

# Float tolerance: an all-reduce sums the two shares' gradients in another order than one batch.
ATOL = 1e-5


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    clips = make_labelled_clips(tmp_path_factory.mktemp("clips"), 20, seed=3)
    return reward_items(clips, clips_per_condition=2)  # 14 train clips, 6 test


def _judgements(items, key: str) -> list[Comparison]:
    rng = random.Random(1)
    out = []
    for split, count in (("train", 11), ("test", 6)):  # 11: the last global batch is short
        pool = [i for i in items if i.split == split]
        for _ in range(count):
            x, y = rng.sample(pool, 2)
            gap = x.labels[key] - y.labels[key]
            out.append(
                Comparison(
                    x.clip_id, y.clip_id, key, "tie" if abs(gap) < 0.5 else "ab"[gap < 0], split
                )
            )
    return out


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return {
        f"{path.parent.name}/{path.name}/{name}": tensor
        for path in sorted(directory.glob("*/*.safetensors"))
        for name, tensor in load_file(path).items()
    }


def _assert_same_model(two: Path, one: Path, *, undetermined: tuple[str, ...] = ()) -> None:
    a, b = _weights(two), _weights(one)
    assert a.keys() == b.keys() and a
    for name in a:
        if not name.endswith(undetermined):
            torch.testing.assert_close(
                a[name], b[name], atol=ATOL, rtol=0, msg=lambda m, n=name: f"{n}: {m}"
            )
    losses_two = json.loads((two / "evaluation.json").read_text())["losses"]
    losses_one = json.loads((one / "evaluation.json").read_text())["losses"]
    assert losses_two.keys() == losses_one.keys()
    for key in losses_one:  # the logged loss is the global batch's, not one share's
        assert losses_two[key] == pytest.approx(losses_one[key], abs=ATOL)


@pytest.mark.parametrize("objective", ["regression", "pairs"])
def test_two_processes_train_the_heads_one_process_trains(tmp_path, items, objective):
    key = "visual_appeal"
    comparisons = _judgements(items, key) if objective == "pairs" else []
    config = RewardTrainConfig(
        objective=objective,
        dimensions=(key, "visual_smoothness") if objective == "regression" else (key,),
        epochs=2,
        batch_size=4,  # 14 clips: a short last batch; 11 judgements: 3 pairs in the last
        encode_batch_size=3,  # 7 encode batches: the ranks share them unevenly
        learning_rate=3e-3,
        dropout=0.3,
        decode_workers=1,
        seed=5,
    )
    progress = []
    two = train_reward_on_gpus(
        items,
        config,
        tmp_path / "two",
        processes=2,
        workdir=tmp_path / "ranks",
        on_progress=lambda *event: progress.append(event),
        comparisons=comparisons,
    )
    one = train_reward(items, config, tmp_path / "one", comparisons=comparisons)
    assert (two.train_clips, two.test_clips) == (one.train_clips, one.test_clips) == (14, 6)
    assert two.metrics.keys() == one.metrics.keys() and two.metrics
    # The pairs loss sees logit differences only: the head's output bias gets an exact gradient of
    # 0, so Adam steps it by float noise (the same in no two summation orders), and it is not
    # compared; every other weight is.
    undetermined = ("head.safetensors/mlp.3.bias",) if objective == "pairs" else ()
    _assert_same_model(tmp_path / "two", tmp_path / "one", undetermined=undetermined)
    assert progress[-1][0] == progress[-1][1]  # the main rank reported to the end
    # The yardstick: another seed (other batches, dropout, initial heads) lands far outside.
    other = train_reward(
        items,
        RewardTrainConfig(**{**config.__dict__, "seed": 6}),
        tmp_path / "other",
        comparisons=comparisons,
    )
    with pytest.raises(AssertionError):
        _assert_same_model(Path(other.output_dir), tmp_path / "one", undetermined=undetermined)


def test_encoder_finetuning_and_the_anisora_preset_on_two_processes_are_refused(tmp_path, items):
    for config, refusal in (
        (
            RewardTrainConfig(dimensions=("text_consistency",), finetune_encoders=True),
            r"fine-tuning encoders \(text_consistency\) is not supported on 2 processes",
        ),
        (RewardTrainConfig(preset="anisora"), "the anisora preset trains on 1 process"),
    ):
        with pytest.raises(ValueError, match=refusal):
            train_reward_on_gpus(
                items,
                config,
                tmp_path / "two",
                processes=2,
                workdir=tmp_path / "ranks",
                on_progress=lambda *event: None,
            )
        assert not (tmp_path / "ranks").exists()  # refused before any process started
    # and by each rank, should a spec reach them: the run fails with the rank's own words
    with pytest.raises(RuntimeError, match="a training process died") as failure:
        launch_ranks(
            "scoring.anime_reward.ranks",
            {
                "items": [asdict(item) for item in items],
                "config": asdict(RewardTrainConfig(finetune_encoders=True, epochs=1)),
                "output_dir": str(tmp_path / "two"),
                "gallery": [],
                "comparisons": [],
            },
            processes=2,
            workdir=tmp_path / "ranks",
            total=1,
            on_progress=lambda *event: None,
        )
    assert "ValueError: fine-tuning encoders" in str(failure.value).split("Last lines")[0]
