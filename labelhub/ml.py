"""The few helpers both ML cores share (AnimeReward and the GAPO trainer), free of Django.

``Progress`` is the one progress-callback type: ``report(step, total, metrics, message)``; the
Django side passes ``runs.services.RunReporter``, the CLIs a tqdm bar, tests a list's append.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[int, int, "dict | None", str], None]


def no_progress(step: int, total: int, metrics: dict | None = None, message: str = "") -> None:
    """A progress callback that ignores everything."""


def pick_device(requested: str = "auto") -> str:
    """``cuda`` when asked for or available under ``auto``, else ``cpu``; clear error for a missing GPU."""
    import torch  # only the ML core calls this; keeps the module importable from the web side

    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {requested!r}")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but no GPU is available")
    return requested


def pick_dtype(device: str):
    """bf16 on a GPU, fp32 on the CPU (where bf16 matmuls are slow)."""
    import torch

    return torch.bfloat16 if device == "cuda" else torch.float32
