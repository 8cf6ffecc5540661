"""The GAPO loss (METHOD.md), a pure function of tensors. No Django, no model code.

For a batch of preference pairs (winner x_w, loser x_l) with rewards r_w >= r_l in [0, 1]:

    gain(r)    = alpha ** r                      (alpha = 2 in the released code)
    gap        = gain(r_w) - gain(r_l)           (>= 0; how much better the winner is)
    model_diff = L_pol(x_w) - L_pol(x_l)         (per-sample v-prediction MSE under the policy)
    ref_diff   = L_ref(x_w) - L_ref(x_l)         (the same under the reference, no gradient)
    inside     = -(beta / 2) * (model_diff - ref_diff)
    loss       = mean(gap * -log sigmoid(inside))

``dpo`` is the same loss with every gap set to 1 (plain Diffusion-DPO, the paper's ablation);
``sft`` is the plain v-prediction MSE on the winners only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from training.alignment.config import LOSS_TYPES  # noqa: F401  (re-exported)

LossType = Literal["gapo", "dpo", "sft"]


@dataclass
class PreferenceLoss:
    """The loss to backpropagate and the figures to log (detached, except ``loss``)."""

    loss: torch.Tensor
    implicit_accuracy: torch.Tensor  # fraction of pairs with inside > 0 (the policy prefers the winner more than the reference does)
    reward_margin: (
        torch.Tensor
    )  # mean of inside: the implicit reward of the winner minus that of the loser
    gap: torch.Tensor  # per-pair gap weight actually used
    inside: torch.Tensor  # per-pair inside term


def per_sample_mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample: the mean over every axis but the first, in float32."""
    return (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)


def reward_gap(
    winner_reward: torch.Tensor, loser_reward: torch.Tensor, *, alpha: float
) -> torch.Tensor:
    """gap = alpha ** r_w - alpha ** r_l, the GAPO weight of each pair."""
    if alpha <= 1:
        raise ValueError(
            f"alpha must be > 1 so that a higher reward has a higher gain; got {alpha}"
        )
    return alpha**winner_reward - alpha**loser_reward


def preference_loss(
    *,
    policy_winner_mse: torch.Tensor,
    policy_loser_mse: torch.Tensor,
    reference_winner_mse: torch.Tensor,
    reference_loser_mse: torch.Tensor,
    winner_reward: torch.Tensor,
    loser_reward: torch.Tensor,
    beta: float,
    alpha: float,
    loss_type: LossType = "gapo",
) -> PreferenceLoss:
    """GAPO (or, with ``loss_type="dpo"``, Diffusion-DPO) loss over a batch of pairs.

    Every argument tensor has shape ``[pairs]``: per-sample MSEs computed with one timestep and
    one noise draw shared by the winner and the loser of a pair; rewards in [0, 1].
    """
    if loss_type not in ("gapo", "dpo"):
        raise ValueError(f"preference_loss handles 'gapo' and 'dpo'; got {loss_type!r}")
    if beta <= 0:
        raise ValueError(f"beta must be positive; got {beta}")
    shapes = {
        t.shape
        for t in (
            policy_winner_mse,
            policy_loser_mse,
            reference_winner_mse,
            reference_loser_mse,
            winner_reward,
            loser_reward,
        )
    }
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(
            f"all inputs must be 1-d tensors of the same length (one per pair); got {shapes}"
        )

    reference_winner_mse = reference_winner_mse.detach()
    reference_loser_mse = reference_loser_mse.detach()

    model_diff = policy_winner_mse - policy_loser_mse
    ref_diff = reference_winner_mse - reference_loser_mse
    inside = -0.5 * beta * (model_diff - ref_diff)
    if loss_type == "gapo":
        gap = reward_gap(winner_reward, loser_reward, alpha=alpha)
    else:
        gap = torch.ones_like(inside)
    dpo = -F.logsigmoid(inside)
    loss = (gap * dpo).mean()
    return PreferenceLoss(
        loss=loss,
        implicit_accuracy=(inside > 0).float().mean().detach(),
        reward_margin=inside.mean().detach(),
        gap=gap.detach(),
        inside=inside.detach(),
    )


def sft_loss(policy_winner_mse: torch.Tensor) -> torch.Tensor:
    """Supervised fine-tuning on the winners: the mean of their v-prediction MSEs."""
    return policy_winner_mse.mean()
