"""AnimeReward training on several GPUs of one host: ``train_reward_on_gpus`` runs
``scoring.anime_reward.train.train_reward`` as N ranks through ``labelhub.ranks.launch_ranks``
(``accelerate launch ... -m scoring.anime_reward.ranks SPEC``); this module is also each rank's
entry point.

Plain Python (no Django): the module is the entry point of every rank.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from labelhub.progress import Progress
from labelhub.ranks import launch_ranks, rank_events, read_spec

from .comparisons import Comparison
from .config import RewardTrainConfig
from .train import RewardItem, TrainResult, refuse_on_processes, train_reward


def train_reward_on_gpus(
    items: Sequence[RewardItem],
    config: RewardTrainConfig,
    output_dir: str | Path,
    *,
    processes: int,
    workdir: Path,
    on_progress: Progress,
    gallery: dict | None = None,
    comparisons: Sequence[Comparison] = (),
) -> TrainResult:
    """``train_reward`` with ``processes`` ranks on this host; the main rank's result.
    ``on_progress`` may raise (a cancelled run): the ranks are stopped first. RuntimeError when a
    rank died; ValueError, before any process starts, for a configuration that is not exact on
    several processes (``refuse_on_processes``)."""
    refuse_on_processes(config, processes)
    spec = {
        "items": [asdict(item) for item in items],
        "config": asdict(config),
        "output_dir": str(output_dir),
        # pairs, not a dict: JSON would turn integer character ids into strings
        "gallery": [[key, list(paths)] for key, paths in (gallery or {}).items()],
        "comparisons": [asdict(c) for c in comparisons],
    }
    result = launch_ranks(
        "scoring.anime_reward.ranks",
        spec,
        processes=processes,
        workdir=workdir,
        total=1,
        on_progress=on_progress,
    )
    return TrainResult(**result)


def _rank_main(spec_path: str) -> None:
    """One rank: train, the main rank writing progress and its result as events."""
    spec = read_spec(spec_path)
    emit = rank_events(spec)

    def progress(step: int, total: int, metrics: dict | None = None, message: str = "") -> None:
        emit({"progress": [step, total, metrics, message]})

    result = train_reward(
        [RewardItem(**item) for item in spec["items"]],
        RewardTrainConfig(**spec["config"]),
        spec["output_dir"],
        on_progress=progress,
        gallery={key: paths for key, paths in spec["gallery"]} or None,
        comparisons=[Comparison(**c) for c in spec["comparisons"]],
    )
    emit({"result": asdict(result)})


if __name__ == "__main__":
    _rank_main(sys.argv[1])
