"""Where the ML core runs: one ``pick_device`` and ``pick_dtype`` (imports torch; the ML core
and GPU jobs only)."""

from __future__ import annotations

import torch


def pick_device(requested: str = "auto") -> str:
    """``cuda`` when asked for or available under ``auto``, else ``cpu``; clear error for a missing GPU."""
    if requested not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, not {requested!r}")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but no GPU is available")
    return requested


def pick_dtype(device: str):
    """bf16 on a GPU, fp32 on the CPU (where bf16 matmuls are slow)."""
    return torch.bfloat16 if device == "cuda" else torch.float32
