"""A trainer on several GPUs of one host: the worker side of ``accelerate launch``, shared by
GAPO/DPO/SFT (``training.ranks``) and AnimeReward (``scoring.anime_reward.ranks``).

``launch_ranks`` (called by a job on a worker that owns N GPUs) writes a spec file and starts
``accelerate launch --multi_gpu --num_processes N -m MODULE SPEC``: N processes (DDP; on CPU,
gloo), each running the trainer through MODULE's entry point. The main rank appends its progress,
checkpoints and result to an events file (``rank_events``), which the worker follows to report
progress to the run (and so meets its cancel check) and record checkpoints. When an admin
cancels, the worker ends the whole process group; when a rank dies, torch's elastic agent ends
the others and ``accelerate launch`` exits non-zero, and the run fails with the launcher's last
lines (it resumes from its last checkpoint like any training run).

Plain Python (no Django, no torch): the rank entry points import it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from labelhub.progress import Progress

POLL_SECONDS = 0.5


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_ranks(
    module: str,
    spec: dict,
    *,
    processes: int,
    workdir: Path,
    total: int,
    on_progress: Progress,
    on_checkpoint: Callable[[str], None] = lambda path: None,
) -> dict:
    """Run ``python -m module SPEC`` as ``processes`` ranks on this host; ``spec`` (plain JSON
    values) reaches every rank with ``events`` (the events file) added. Returns the main rank's
    ``result`` event. ``on_progress`` may raise (a cancelled run): the ranks are stopped first.
    RuntimeError when a rank died (or the ranks ended without a result)."""
    workdir.mkdir(parents=True, exist_ok=True)
    events = workdir / "rank-events.jsonl"
    events.unlink(missing_ok=True)
    spec_path = workdir / "rank-spec.json"
    spec_path.write_text(json.dumps({**spec, "events": str(events)}))
    log_path = workdir / "ranks.log"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        f"--num_processes={processes}",
        "--num_machines=1",
        "--mixed_precision=no",  # the trainers pick bf16 themselves from their configs
        "--dynamo_backend=no",
        f"--main_process_port={_free_port()}",
        "-m",
        module,
        str(spec_path),
    ]
    with open(log_path, "ab") as log:
        launcher = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    result: dict | None = None
    read = 0
    last = (0, total)
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
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        # A rank's own exception is above the elastic agent's summary: name the first one.
        raised = re.search(
            r"^(?:\[rank\d+\]: )?([\w.]*(?:Error|Exception): .*)$", text, flags=re.MULTILINE
        )
        raise RuntimeError(
            f"a training process died: accelerate launch of {processes} ranks exited with "
            f"{launcher.returncode}"
            + (f" ({raised.group(1)[:500]})" if raised else "")
            + "; resume the run (a trainer that writes checkpoints continues from its last one)."
            + f" Last lines:\n{text[-1500:]}"
        )
    return result


def rank_events(spec: dict) -> Callable[[dict], None]:
    """In a rank: ``emit(event)`` appends the event to the spec's events file on the main rank
    (RANK 0) and does nothing on the others."""
    main = os.environ.get("RANK", "0") == "0"
    events = Path(spec["events"])

    def emit(event: dict) -> None:
        if main:
            with open(events, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(event) + "\n")
                handle.flush()
                os.fsync(handle.fileno())

    return emit


def read_spec(path: str) -> dict:
    """In a rank: the spec ``launch_ranks`` wrote."""
    return json.loads(Path(path).read_text())


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
