"""GAPO/DPO/SFT on several GPUs of one host: the worker side of ``accelerate launch``.

``train_on_gpus`` (called by the training job on a worker that owns N GPUs) writes a spec file
and starts ``accelerate launch --multi_gpu --num_processes N -m training.ranks SPEC``: N processes
(DDP; on CPU, gloo) each running ``training.alignment.trainer.train``. The main rank appends its
progress and checkpoints to an events file, which the worker follows to report progress to the
run (and so meets its cancel check) and record checkpoints. When an admin cancels, the worker
ends the whole process group; when a rank dies, torch's elastic agent ends the others and
``accelerate launch`` exits non-zero, and the run fails with the launcher's last lines (it
resumes from its last checkpoint like any training run).

Plain Python (no Django): the module is the entry point of every rank.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from labelhub.ml import Progress

POLL_SECONDS = 0.5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
    workdir.mkdir(parents=True, exist_ok=True)
    events = workdir / "rank-events.jsonl"
    events.unlink(missing_ok=True)
    spec = workdir / "rank-spec.json"
    spec.write_text(
        json.dumps({"config": asdict(config), "pairs": str(pairs_path), "events": str(events)})
    )
    log_path = workdir / "ranks.log"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        f"--num_processes={processes}",
        "--num_machines=1",
        "--mixed_precision=no",  # the trainer picks bf16 itself from its config
        "--dynamo_backend=no",
        f"--main_process_port={_free_port()}",
        "-m",
        "training.ranks",
        str(spec),
    ]
    with open(log_path, "ab") as log:
        launcher = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    result: dict | None = None
    read = 0
    last = (0, config.max_steps)
    try:
        while True:
            ended = launcher.poll() is not None
            if events.exists():
                with open(events, encoding="utf-8") as handle:
                    handle.seek(read)
                    for line in handle:
                        if not line.endswith("\n"):
                            break  # a line still being written: read it next time
                        read += len(line.encode("utf-8"))
                        event = json.loads(line)
                        if "progress" in event:
                            last = tuple(event["progress"][:2])
                            on_progress(*event["progress"])
                        elif "checkpoint" in event:
                            on_checkpoint(event["checkpoint"])
                        elif "result" in event:
                            result = event["result"]
            if ended:
                break
            on_progress(*last, None, "")  # the run's cancel check, also while ranks are silent
            time.sleep(POLL_SECONDS)
    except BaseException:
        _stop(launcher)
        raise
    if launcher.returncode != 0 or result is None:
        tail = log_path.read_text(errors="replace")[-1500:] if log_path.exists() else ""
        raise RuntimeError(
            f"a training process died: accelerate launch of {processes} ranks exited with "
            f"{launcher.returncode}; resume the run from its last checkpoint. Last lines:\n{tail}"
        )
    return result


def _stop(launcher: subprocess.Popen) -> None:
    """End the launcher and every rank (one process group), politely first."""
    if launcher.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(launcher.pid, sig)
        except ProcessLookupError:
            return
        try:
            launcher.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _rank_main(spec_path: str) -> None:
    """One rank: train, the main rank writing events for the worker that follows them."""
    from training.alignment.config import TrainConfig
    from training.alignment.pairs import read_pairs_jsonl
    from training.alignment.trainer import train

    spec = json.loads(Path(spec_path).read_text())
    main = os.environ.get("RANK", "0") == "0"
    events = Path(spec["events"])

    def emit(event: dict) -> None:
        if main:
            with open(events, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(event) + "\n")
                handle.flush()
                os.fsync(handle.fileno())

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
