"""GAPO/DPO/SFT on several GPUs of one host: ``train_on_gpus`` runs
``training.alignment.trainer.train`` as N ranks through ``labelhub.ranks.launch_ranks``
(``accelerate launch ... -m training.ranks SPEC``); this module is also each rank's entry point.

Plain Python (no Django): the module is the entry point of every rank.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from labelhub.progress import Progress
from labelhub.ranks import launch_ranks, rank_events, read_spec


def train_on_gpus(
    config,
    pairs_path: Path,
    *,
    processes: int,
    workdir: Path,
    on_progress: Progress,
    on_checkpoint: Callable[[str], None],
) -> dict:
    """Train with ``processes`` ranks on this host; returns the main rank's result
    (``lora_dir``, ``steps``, ``checkpoint_dir``). ``on_progress`` may raise (a cancelled run):
    the ranks are stopped first. RuntimeError when a rank died."""
    return launch_ranks(
        "training.ranks",
        {"config": asdict(config), "pairs": str(pairs_path)},
        processes=processes,
        workdir=workdir,
        total=config.max_steps,
        on_progress=on_progress,
        on_checkpoint=on_checkpoint,
    )


def _rank_main(spec_path: str) -> None:
    """One rank: train, the main rank writing events for the worker that follows them."""
    from training.alignment.config import TrainConfig
    from training.alignment.pairs import read_pairs_jsonl
    from training.alignment.trainer import train

    spec = read_spec(spec_path)
    emit = rank_events(spec)

    def progress(step: int, total: int, metrics: dict | None = None, message: str = "") -> None:
        emit({"progress": [step, total, metrics, message]})

    result = train(
        TrainConfig(**spec["config"]),
        read_pairs_jsonl(spec["pairs"]),
        on_progress=progress,
        on_checkpoint=lambda path: emit({"checkpoint": path}),
    )
    emit(
        {
            "result": {
                "lora_dir": result.lora_dir,
                "steps": result.steps,
                "checkpoint_dir": result.checkpoint_dir,
            }
        }
    )


if __name__ == "__main__":
    _rank_main(sys.argv[1])
