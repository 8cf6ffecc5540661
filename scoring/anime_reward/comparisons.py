"""Learning AnimeReward from A/B/tie judgements: the Bradley-Terry model with ties.

A dimension's head gives each clip a logit ``z`` (its reward is ``sigmoid(z)`` in [0, 1], so
scoring, pairs and GAPO read it unchanged). For two clips with ``d = z_a - z_b`` the two tie
models give the probabilities of "a better", "b better" and "tie":

- Rao-Kupper (1967; VideoAlign's "BTT"), threshold ``eta = log(theta) >= 0``::

      P(a) = sigmoid(d - eta)      P(b) = sigmoid(-d - eta)      P(tie) = 1 - P(a) - P(b)
                                                                        = sigmoid(eta - d) - sigmoid(-eta - d)

- Davidson (1970), tie strength ``nu = exp(log_nu) >= 0``::

      P(a) : P(b) : P(tie) = exp(d / 2) : exp(-d / 2) : nu       (a softmax over three logits)

With ``eta = 0`` (or ``nu = 0``) both are plain Bradley-Terry and a tie has probability 0. The tie
parameter is learnt with the heads (``TieParameter``: one per dimension), so it finds how far
apart two clips must be before judges stop calling them even. The loss is the mean negative
log-likelihood of the judges' choices: pure functions of tensors, testable by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import TIE_MODELS

CHOICES = ("a", "b", "tie")
CHOICE_INDEX = {choice: index for index, choice in enumerate(CHOICES)}


@dataclass(frozen=True)
class Comparison:
    """One judge's choice on one dimension between two clips of a snapshot (its judgements file)."""

    clip_a: int | str
    clip_b: int | str
    dimension: str  # a dimension key, or "overall" (the judge's overall choice)
    choice: str  # "a", "b" or "tie"
    split: str  # "train" or "test": both clips are on this side of the grouped split
    judge: str = ""  # pseudonym

    def __post_init__(self):
        if self.choice not in CHOICES:
            raise ValueError(f"comparison choice must be a, b or tie, not {self.choice!r}")
        if self.split not in ("train", "test"):
            raise ValueError(f"comparison split must be train or test, not {self.split!r}")


def choice_indices(choices: list[str]) -> torch.Tensor:
    """ "a" / "b" / "tie" -> 0 / 1 / 2 (the column order of ``outcome_log_probs``)."""
    return torch.tensor([CHOICE_INDEX[c] for c in choices], dtype=torch.long)


def _log_sub_exp(log_x: torch.Tensor, log_y: torch.Tensor) -> torch.Tensor:
    """log(exp(log_x) - exp(log_y)) for log_x > log_y, without cancelling to log(0) early."""
    return log_x + torch.log1p(-torch.exp(log_y - log_x).clamp(max=1 - 1e-7))


def outcome_log_probs(
    logit_a: torch.Tensor, logit_b: torch.Tensor, tie: torch.Tensor, *, model: str
) -> torch.Tensor:
    """(N,), (N,), scalar -> (N, 3) log P(a better), log P(b better), log P(tie).

    ``tie`` is ``eta`` (Rao-Kupper, >= 0) or ``log_nu`` (Davidson, any real).
    """
    d = logit_a.float() - logit_b.float()
    if model == "rao_kupper":
        eta = tie.float()
        log_a = F.logsigmoid(d - eta)
        log_b = F.logsigmoid(-d - eta)
        log_tie = _log_sub_exp(F.logsigmoid(eta - d), F.logsigmoid(-eta - d))
        return torch.stack([log_a, log_b, log_tie], dim=-1)
    if model == "davidson":
        logits = torch.stack([d / 2, -d / 2, tie.float().expand_as(d)], dim=-1)
        return torch.log_softmax(logits, dim=-1)
    raise ValueError(f"tie model must be one of {', '.join(TIE_MODELS)}, not {model!r}")


def comparison_loss(
    logit_a: torch.Tensor,
    logit_b: torch.Tensor,
    choices: torch.Tensor,
    tie: torch.Tensor,
    *,
    model: str,
) -> torch.Tensor:
    """Mean negative log-likelihood of the judges' choices (``choice_indices``) under the model."""
    log_probs = outcome_log_probs(logit_a, logit_b, tie, model=model)
    return -log_probs.gather(-1, choices.view(-1, 1)).mean()


class TieParameter(nn.Module):
    """The learnt tie parameter of one dimension.

    Rao-Kupper keeps ``eta = softplus(raw) >= 0``; Davidson uses ``log_nu = raw`` directly.
    Both start where P(tie) is 1/3 for two equal clips, a neutral prior.
    """

    def __init__(self, model: str):
        super().__init__()
        if model not in TIE_MODELS:
            raise ValueError(f"tie model must be one of {', '.join(TIE_MODELS)}, not {model!r}")
        self.model = model
        if model == "rao_kupper":
            # P(tie | d=0) = 2 sigmoid(eta) - 1 = 1/3  <=>  eta = log 2
            start = math.log(math.expm1(math.log(2.0)))  # softplus^-1(log 2)
        else:
            start = 0.0  # nu = 1: exp(0) : exp(0) : 1
        self.raw = nn.Parameter(torch.tensor(start))

    def forward(self) -> torch.Tensor:
        return F.softplus(self.raw) if self.model == "rao_kupper" else self.raw

    def describe(self) -> dict:
        """The learnt value in the model's own terms, for the run's record."""
        value = float(self.forward().detach())
        if self.model == "rao_kupper":
            return {"model": self.model, "eta": value, "theta": math.exp(value)}
        return {"model": self.model, "nu": math.exp(value)}
