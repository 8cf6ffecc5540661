"""Peak host memory (RSS) of reward fine-tuning as the dataset grows.

    .venv/bin/python bench/reward_finetune_memory.py --clips 200
    .venv/bin/python bench/reward_finetune_memory.py --clips 800

Tiny encoder widths with the full preset's decode size (frames at 1024 px, as ``full`` decodes
them) and its default fine-tuned dimensions (smoothness, text and image consistency), one epoch.
Before the disk cache, every decoded clip stayed in memory at 1024 px until training ended (16
frames here: 50 MB a clip); now each clip's frames go to disk at the fine-tuned encoders' input
sizes and come back per batch. Run each size in its own process: peak RSS is per process.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scoring.anime_reward import config as reward_config  # noqa: E402
from scoring.anime_reward.synthetic import make_labelled_clips  # noqa: E402
from scoring.anime_reward.train import train_reward  # noqa: E402
from tests.reward_data import reward_items  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--frame-size", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    # tiny widths, full's decode size: the memory that grows is the frames', not the weights'
    reward_config.PRESETS["tiny"] = dataclasses.replace(
        reward_config.PRESETS["tiny"], frame_size=args.frame_size
    )
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_labelled_clips(Path(tmp) / "clips", args.clips, seed=0)
        items = reward_items(clips)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        train_reward(
            items,
            reward_config.RewardTrainConfig(
                preset="tiny",
                epochs=1,
                dimensions=reward_config.PRESETS["full"].finetune,
                finetune_encoders=True,
                encode_batch_size=8,
                decode_workers=args.workers,
                device="cpu",
            ),
            Path(tmp) / "model",
        )
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"clips {args.clips}  frame size {args.frame_size}  peak RSS {peak:.0f} MB "
        f"(before training {before:.0f} MB)  {seconds:.0f} s  pid {os.getpid()}"
    )


if __name__ == "__main__":
    main()
