"""The GAPO loss against numbers worked out by hand (METHOD.md formulas)."""

import math

import pytest
import torch

from training.alignment.gapo import per_sample_mse, preference_loss, reward_gap, sft_loss

LOG2 = 0.6931471805599453


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def loss_of(pw, pl, rw, rl, r_win, r_lose, *, beta=5000.0, alpha=2.0, loss_type="gapo"):
    return preference_loss(
        policy_winner_mse=t(*pw),
        policy_loser_mse=t(*pl),
        reference_winner_mse=t(*rw),
        reference_loser_mse=t(*rl),
        winner_reward=t(*r_win),
        loser_reward=t(*r_lose),
        beta=beta,
        alpha=alpha,
        loss_type=loss_type,
    )


def test_gap_weight_is_alpha_to_the_reward_difference():
    # 2**0.75 - 2**0.25 = 1.6817928 - 1.1892071 = 0.4925857
    assert reward_gap(t(0.75), t(0.25), alpha=2.0).item() == pytest.approx(0.4925857, abs=1e-6)
    # 2**1 - 2**0 = 1 ; 4**0.5 - 4**0 = 1 ; 2**0.5 - 1 = 0.4142136
    assert reward_gap(t(1.0), t(0.0), alpha=2.0).item() == pytest.approx(1.0)
    assert reward_gap(t(0.5), t(0.0), alpha=4.0).item() == pytest.approx(1.0)
    assert reward_gap(t(0.5), t(0.0), alpha=2.0).item() == pytest.approx(0.4142136, abs=1e-6)
    assert reward_gap(t(0.4), t(0.4), alpha=2.0).item() == 0.0


def test_policy_equal_to_reference_gives_gap_times_log2():
    # inside = 0, -log sigmoid(0) = log 2, so the loss is gap * log 2 per pair.
    out = loss_of([0.3], [0.7], [0.3], [0.7], [1.0], [0.0])
    assert out.loss.item() == pytest.approx(LOG2, abs=1e-9)
    out = loss_of([0.3], [0.7], [0.3], [0.7], [0.5], [0.0])
    assert out.loss.item() == pytest.approx(0.4142136 * LOG2, abs=1e-6)  # 0.2871110
    assert out.implicit_accuracy.item() == 0.0  # inside is exactly 0, not > 0
    assert out.reward_margin.item() == 0.0


def test_hand_computed_pair_with_paper_defaults():
    # beta = 5000: model_diff = 0.1000 - 0.1002 = -0.0002, ref_diff = 0
    # inside = -(5000 / 2) * (-0.0002) = 0.5 ; -log sigmoid(0.5) = log(1 + e^-0.5) = 0.4740770
    # gap(0.75, 0.25) = 0.4925857 ; loss = 0.4925857 * 0.4740770 = 0.2335236
    out = loss_of([0.1000], [0.1002], [0.1], [0.1], [0.75], [0.25])
    assert out.inside.item() == pytest.approx(0.5, abs=1e-9)
    assert out.loss.item() == pytest.approx(0.2335236, abs=1e-6)
    assert out.implicit_accuracy.item() == 1.0
    assert out.reward_margin.item() == pytest.approx(0.5, abs=1e-9)


def test_sign_the_loser_getting_relatively_better_is_penalised():
    # Same numbers with winner and loser swapped on the policy side: inside = -0.5
    # -log sigmoid(-0.5) = log(1 + e^0.5) = 0.9740770 ; times gap 1 (rewards 1 and 0).
    better = loss_of([0.1000], [0.1002], [0.1], [0.1], [1.0], [0.0])
    worse = loss_of([0.1002], [0.1000], [0.1], [0.1], [1.0], [0.0])
    assert better.loss.item() == pytest.approx(0.4740770, abs=1e-6)
    assert worse.loss.item() == pytest.approx(0.9740770, abs=1e-6)
    assert worse.implicit_accuracy.item() == 0.0
    assert worse.reward_margin.item() == pytest.approx(-0.5, abs=1e-9)


def test_reference_enters_with_opposite_sign():
    # model_diff = 0, ref_diff = 0.2001 - 0.2 = 0.0001 -> inside = -2500 * (0 - 0.0001) = 0.25
    # -log sigmoid(0.25) = log(1 + e^-0.25) = 0.5759394
    out = loss_of([0.2], [0.2], [0.2001], [0.2], [1.0], [0.0])
    assert out.inside.item() == pytest.approx(0.25, abs=1e-9)
    assert out.loss.item() == pytest.approx(0.5759394, abs=1e-6)


def test_beta_scales_the_inside_term():
    # Half the difference at twice beta gives the same inside (0.5) and the same loss.
    a = loss_of([0.1000], [0.1002], [0.1], [0.1], [1.0], [0.0], beta=5000.0)
    b = loss_of([0.1000], [0.1001], [0.1], [0.1], [1.0], [0.0], beta=10000.0)
    assert b.inside.item() == pytest.approx(a.inside.item(), abs=1e-9)
    assert b.loss.item() == pytest.approx(a.loss.item(), abs=1e-9)


def test_alpha_changes_only_the_gap_weight():
    # rewards 0.5 and 0: gap 0.4142136 at alpha 2, 1.0 at alpha 4; inside 0.5 in both.
    a2 = loss_of([0.1000], [0.1002], [0.1], [0.1], [0.5], [0.0], alpha=2.0)
    a4 = loss_of([0.1000], [0.1002], [0.1], [0.1], [0.5], [0.0], alpha=4.0)
    assert a2.loss.item() == pytest.approx(0.4142136 * 0.4740770, abs=1e-6)
    assert a4.loss.item() == pytest.approx(0.4740770, abs=1e-6)


def test_batch_mean_over_pairs_with_per_pair_gaps():
    # pair 1: inside 0.5, gap 1 -> 0.4740770 ; pair 2: inside 0, gap 0.4142136 -> 0.2871110
    out = loss_of([0.1000, 0.3], [0.1002, 0.7], [0.1, 0.3], [0.1, 0.7], [1.0, 0.5], [0.0, 0.0])
    assert out.loss.item() == pytest.approx((0.4740770 + 0.2871110) / 2, abs=1e-6)
    assert out.implicit_accuracy.item() == 0.5
    assert out.reward_margin.item() == pytest.approx(0.25, abs=1e-9)


def test_dpo_equals_gapo_with_unit_gaps():
    args = ([0.1000, 0.3], [0.1002, 0.69], [0.1, 0.3], [0.1, 0.7])
    dpo = loss_of(*args, [0.9, 0.6], [0.1, 0.5], loss_type="dpo")
    gapo_unit = loss_of(*args, [1.0, 1.0], [0.0, 0.0], alpha=2.0)  # 2**1 - 2**0 = 1 for both
    assert dpo.gap.tolist() == [1.0, 1.0]
    assert dpo.loss.item() == pytest.approx(gapo_unit.loss.item(), abs=1e-12)


def test_gradient_pushes_winner_error_down_and_loser_error_up():
    # At inside = 0: dL/dL_pol(x_w) = gap * sigmoid(-inside) * beta / 2 = 1 * 0.5 * 2500 = 1250
    pw, pl = t(0.3).requires_grad_(), t(0.7).requires_grad_()
    out = preference_loss(
        policy_winner_mse=pw,
        policy_loser_mse=pl,
        reference_winner_mse=t(0.3),
        reference_loser_mse=t(0.7),
        winner_reward=t(1.0),
        loser_reward=t(0.0),
        beta=5000.0,
        alpha=2.0,
    )
    out.loss.backward()
    assert pw.grad.item() == pytest.approx(1250.0)
    assert pl.grad.item() == pytest.approx(-1250.0)


def test_reference_gets_no_gradient():
    rw = t(0.3).requires_grad_()
    out = preference_loss(
        policy_winner_mse=t(0.3).requires_grad_(),
        policy_loser_mse=t(0.7),
        reference_winner_mse=rw,
        reference_loser_mse=t(0.7),
        winner_reward=t(1.0),
        loser_reward=t(0.0),
        beta=5000.0,
        alpha=2.0,
    )
    out.loss.backward()
    assert rw.grad is None


def test_per_sample_mse_and_sft():
    pred = torch.zeros(2, 2, 3)
    target = torch.stack([torch.ones(2, 3), torch.full((2, 3), 2.0)])
    assert per_sample_mse(pred, target).tolist() == [1.0, 4.0]
    assert sft_loss(per_sample_mse(pred, target)).item() == 2.5


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="beta"):
        loss_of([0.1], [0.1], [0.1], [0.1], [1.0], [0.0], beta=0.0)
    with pytest.raises(ValueError, match="alpha"):
        loss_of([0.1], [0.1], [0.1], [0.1], [1.0], [0.0], alpha=1.0)
    with pytest.raises(ValueError, match="same length"):
        loss_of([0.1, 0.2], [0.1], [0.1], [0.1], [1.0], [0.0])
    with pytest.raises(ValueError, match="gapo"):
        loss_of([0.1], [0.1], [0.1], [0.1], [1.0], [0.0], loss_type="sft")


def test_gradient_at_the_reference_is_a_quarter_beta_times_the_gap():
    # At policy == reference, inside = 0: d(-log sigmoid(inside))/d inside = -(1 - 1/2) = -1/2 and
    # d inside / d policy_winner_mse = -beta/2, so d loss / d policy_winner_mse = gap * beta / 4;
    # r_w = 1, r_l = 0, alpha = 2 give gap = 1: 5000 / 4 = 1250 (and -1250 for the loser).
    winner = t(0.3).requires_grad_()
    loser = t(0.6).requires_grad_()
    out = preference_loss(
        policy_winner_mse=winner,
        policy_loser_mse=loser,
        reference_winner_mse=t(0.3),
        reference_loser_mse=t(0.6),
        winner_reward=t(1.0),
        loser_reward=t(0.0),
        beta=5000.0,
        alpha=2.0,
    )
    out.loss.backward()
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-12)
    assert winner.grad.item() == pytest.approx(1250.0) and loser.grad.item() == pytest.approx(
        -1250.0
    )
