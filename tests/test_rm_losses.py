"""Reward-model losses and metrics against values worked out by hand."""

import math

import numpy as np
import pytest
import torch

from reward_model.losses import (
    bradley_terry_loss,
    length_correlation_penalty,
    odin_loss,
    orthogonality_penalty,
    pair_mask,
    pearson,
    plackett_luce_loss,
    rank_gap_margins,
    score_margins,
)
from reward_model.metrics import expected_calibration_error, head_metrics, length_correlations, preference_metrics


def nll_sigmoid(x: float) -> float:
    return -math.log(1 / (1 + math.exp(-x)))


def test_pair_mask_orders_pairs_and_drops_ties_and_padding():
    ranks = torch.tensor([[1, 2, 2, 0]])
    mask = pair_mask(ranks)[0]
    assert mask.nonzero().tolist() == [[0, 1], [0, 2]]


def test_bradley_terry_on_one_pair():
    rewards = torch.tensor([[1.0, 0.0]])
    ranks = torch.tensor([[1, 2]])
    # −log σ(1 − 0) = log(1 + e^−1) = 0.31326…
    assert bradley_terry_loss(rewards, ranks).item() == pytest.approx(0.313262, abs=1e-6)


def test_bradley_terry_averages_every_pair_of_a_ranking_and_applies_margins():
    rewards = torch.tensor([[2.0, 1.0, 0.0]])
    ranks = torch.tensor([[1, 2, 3]])
    expected = (nll_sigmoid(1) + nll_sigmoid(2) + nll_sigmoid(1)) / 3
    assert bradley_terry_loss(rewards, ranks).item() == pytest.approx(expected, abs=1e-6)
    margins = rank_gap_margins(ranks, scale=0.5)
    # only the pair two ranks apart (0 over 2) gets a margin: 0.5 · (3 − 1 − 1) = 0.5
    assert margins[0, 0, 2].item() == 0.5 and margins[0, 0, 1].item() == 0 and margins[0, 1, 2].item() == 0
    expected_m = (nll_sigmoid(1) + nll_sigmoid(2 - 0.5) + nll_sigmoid(1)) / 3
    assert bradley_terry_loss(rewards, ranks, margins).item() == pytest.approx(expected_m, abs=1e-6)


def test_bradley_terry_per_group_averaging_counts_each_ranking_once():
    # group 1: a 3-response ranking (3 pairs: gaps 1, 2, 1); group 2: one pair with gap 0.5; group 3: all tied
    rewards = torch.tensor([[2.0, 1.0, 0.0], [0.5, 0.0, 0.0], [1.0, 1.0, 0.0]])
    ranks = torch.tensor([[1, 2, 3], [1, 2, 0], [1, 1, 0]])
    three = [nll_sigmoid(1), nll_sigmoid(2), nll_sigmoid(1)]
    # by pair: the ranking's 3 pairs outweigh the lone pair 3 : 1
    by_pair = (sum(three) + nll_sigmoid(0.5)) / 4
    assert bradley_terry_loss(rewards, ranks).item() == pytest.approx(by_pair, abs=1e-6)
    # by group: each group's mean, then the mean over the two groups that have a pair
    by_group = (sum(three) / 3 + nll_sigmoid(0.5)) / 2
    assert bradley_terry_loss(rewards, ranks, per_group=True).item() == pytest.approx(by_group, abs=1e-6)
    pairs_only = torch.tensor([[1.0, 0.0], [0.3, 0.9]]), torch.tensor([[1, 2], [2, 1]])
    assert bradley_terry_loss(*pairs_only).item() == pytest.approx(bradley_terry_loss(*pairs_only, per_group=True).item())


def test_score_margins_follow_score_differences():
    margins = score_margins(torch.tensor([[5.0, 3.0]]), scale=0.25)
    assert margins[0].tolist() == [[0.0, 0.5], [0.0, 0.0]]


def test_ties_and_padding_give_no_pairs():
    rewards = torch.tensor([[1.0, 3.0, 9.0]], requires_grad=True)
    ranks = torch.tensor([[1, 1, 0]])
    loss = bradley_terry_loss(rewards, ranks)
    assert loss.item() == 0.0
    loss.backward()  # still differentiable: a batch of ties must not crash training


def test_plackett_luce_strict_ranking():
    rewards = torch.tensor([[2.0, 1.0, 0.0]])
    ranks = torch.tensor([[1, 2, 3]])
    # log L = [2 − log(e² + e + 1)] + [1 − log(e + 1)] + 0
    log_l = (2 - math.log(math.e**2 + math.e + 1)) + (1 - math.log(math.e + 1))
    assert plackett_luce_loss(rewards, ranks).item() == pytest.approx(-log_l, abs=1e-6)


def test_plackett_luce_is_order_invariant_in_slots_and_ignores_padding():
    a = plackett_luce_loss(torch.tensor([[2.0, 1.0, 0.0, 0.0]]), torch.tensor([[1, 2, 3, 0]]))
    b = plackett_luce_loss(torch.tensor([[0.0, 2.0, 7.0, 1.0]]), torch.tensor([[3, 1, 0, 2]]))
    assert a.item() == pytest.approx(b.item(), abs=1e-6)


def test_plackett_luce_with_ties_uses_breslow_choice_sets():
    rewards = torch.tensor([[1.0, 0.5, 0.0]])
    ranks = torch.tensor([[1, 1, 2]])
    # both tied items are chosen from the full set; the last one contributes 0
    lse = math.log(math.e**1 + math.e**0.5 + 1)
    expected = -((1 - lse) + (0.5 - lse))
    assert plackett_luce_loss(rewards, ranks).item() == pytest.approx(expected, abs=1e-6)


def test_plackett_luce_tie_pulls_rewards_together():
    rewards = torch.tensor([[1.0, 0.0]], requires_grad=True)
    plackett_luce_loss(rewards, torch.tensor([[1, 1]])).backward()
    assert rewards.grad[0, 0] > 0 > rewards.grad[0, 1]  # descent lowers r0 and raises r1


def test_plackett_luce_equals_bradley_terry_for_a_pair():
    rewards, ranks = torch.tensor([[0.3, -1.2], [2.0, 0.5]]), torch.tensor([[1, 2], [2, 1]])
    # PL averages per group; BT averages per pair; with one pair per group they agree
    assert plackett_luce_loss(rewards, ranks).item() == pytest.approx(bradley_terry_loss(rewards, ranks).item(), abs=1e-6)


def test_metrics_accuracy_margin_domains_and_reward_stats():
    rewards = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [3.0, 3.0, 0.0]])
    ranks = np.array([[1, 2, 0], [1, 2, 0], [1, 2, 3]])
    m = preference_metrics(rewards, ranks, ["med", "fin", "med"])
    # pairs: +1 (right), −2 (wrong), 0 (half), +3, +3 (right)
    assert m["pairs"] == 5
    assert m["accuracy"] == pytest.approx((1 + 0 + 0.5 + 1 + 1) / 5)
    assert m["mean_margin"] == pytest.approx((1 - 2 + 0 + 3 + 3) / 5)
    assert m["accuracy/fin"] == 0.0 and m["accuracy/med"] == pytest.approx(3.5 / 4)
    assert m["reward_mean"] == pytest.approx(np.mean([1, 0, 0, 2, 3, 3, 0]))


def test_ece_of_a_perfectly_calibrated_and_an_overconfident_model():
    assert expected_calibration_error(np.zeros(10)) == pytest.approx(0.0)  # p = ½, half right by symmetry
    # d = +10 and −10: p ≈ 1 and p ≈ 0 — each confidence bin holds half right, half wrong
    assert expected_calibration_error(np.array([10.0, -10.0])) == pytest.approx(0.5, abs=1e-3)


# --- ODIN: two heads, a length-correlation penalty and an orthogonality penalty


def test_pearson_by_hand_and_zero_with_a_finite_gradient_for_a_constant():
    x, y = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 4.0])
    # centred: x (−1, 0, 1), y (−4/3, −1/3, 5/3); Σxy = 3, Σx² = 2, Σy² = 14/3
    assert pearson(x, y).item() == pytest.approx(3 / math.sqrt(2 * 14 / 3), abs=1e-6)
    assert pearson(-x, y).item() == pytest.approx(-3 / math.sqrt(2 * 14 / 3), abs=1e-6)
    flat = torch.zeros(3, requires_grad=True)  # two zero-initialised heads would start here
    rho = pearson(flat, y)
    rho.backward()
    assert rho.item() == 0.0 and torch.isfinite(flat.grad).all()


def test_length_penalty_wants_quality_uncorrelated_either_way_and_the_length_head_correlated():
    lengths = torch.tensor([1.0, 2.0, 3.0])
    uncorrelated = torch.tensor([1.0, -2.0, 1.0])  # centred: Σ (1, −2, 1)·(−1, 0, 1) = 0
    # the best case: ρ(r_Q, L) = 0 and the length head an increasing function of L (ρ = 1): 0 − 1
    assert length_correlation_penalty(uncorrelated, 2 * lengths + 5, lengths).item() == pytest.approx(-1.0, abs=1e-6)
    # a quality head that tracks length is penalised whichever its sign: |±1| − 1 = 0
    assert length_correlation_penalty(lengths, lengths, lengths).item() == pytest.approx(0.0, abs=1e-6)
    assert length_correlation_penalty(-lengths, lengths, lengths).item() == pytest.approx(0.0, abs=1e-6)
    # the worst: quality tracks length, the length head goes against it: 1 − (−1)
    assert length_correlation_penalty(lengths, -lengths, lengths).item() == pytest.approx(2.0, abs=1e-6)


def test_orthogonality_penalty_is_the_absolute_cosine_of_the_heads():
    assert orthogonality_penalty(torch.tensor([[1.0, 0.0], [1.0, 1.0]])).item() == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert orthogonality_penalty(torch.tensor([[10.0, 0.0], [1.0, 1.0]])).item() == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert orthogonality_penalty(torch.tensor([[3.0, 0.0], [0.0, 2.0]])).item() == pytest.approx(0.0, abs=1e-7)
    assert orthogonality_penalty(torch.tensor([[1.0, 2.0], [-2.0, -4.0]])).item() == pytest.approx(1.0, abs=1e-6)


def test_odin_loss_by_hand_sums_the_heads_for_ranking_and_leaves_padding_out():
    # two pairs and a padding slot holding 9s and length 99, which must count nowhere
    quality = [[1.0, 0.0, 9.0], [0.5, 0.0, 9.0]]
    length_head = [[0.0, 1.0, 9.0], [1.0, 0.0, 9.0]]
    rewards = torch.stack([torch.tensor(quality), torch.tensor(length_head)], dim=-1)  # (2, 3, 2)
    ranks = torch.tensor([[1, 2, 0], [2, 1, 0]])
    lengths = torch.tensor([[10.0, 20.0, 99.0], [30.0, 40.0, 99.0]])
    weight = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    out = odin_loss(rewards, ranks, lengths, weight, lambda r: bradley_terry_loss(r, ranks), 2.0, 0.5)
    # ranking on the sums (1, 1) and (1.5, 0), the second pair preferring slot 1: −log σ(0), −log σ(−1.5)
    ranking = (math.log(2) + math.log(1 + math.exp(1.5))) / 2
    # responses 1, 0, 0.5, 0 (quality) and 0, 1, 1, 0 (length head) against lengths 10, 20, 30, 40:
    # centred quality (0.625, −0.375, 0.125, −0.375), lengths (−15, −5, 5, 15): Σ = −12.5, Σq² = 0.6875, ΣL² = 500;
    # centred length head (−0.5, 0.5, 0.5, −0.5): Σ = 0, ρ = 0
    rho_q = -12.5 / math.sqrt(0.6875 * 500)
    assert out.ranking.item() == pytest.approx(ranking, abs=1e-6)
    assert out.quality_corr.item() == pytest.approx(rho_q, abs=1e-6) and out.length_corr.item() == pytest.approx(0, abs=1e-7)
    assert out.length.item() == pytest.approx(abs(rho_q) - 0, abs=1e-6)
    assert out.orthogonal.item() == pytest.approx(1 / math.sqrt(2), abs=1e-6)
    assert out.total.item() == pytest.approx(ranking + 2.0 * abs(rho_q) + 0.5 / math.sqrt(2), abs=1e-6)


def test_odin_loss_gradients_reach_both_heads_and_their_weights():
    rewards = torch.tensor([[[1.0, 0.2], [0.0, 0.9]], [[0.3, 0.1], [0.4, 0.7]]], requires_grad=True)
    weight = torch.tensor([[1.0, 0.5], [0.2, 1.0]], requires_grad=True)
    ranks = torch.tensor([[1, 2], [2, 1]])
    out = odin_loss(rewards, ranks, torch.tensor([[5.0, 9.0], [2.0, 7.0]]), weight, lambda r: bradley_terry_loss(r, ranks))
    out.total.backward()
    assert (rewards.grad[..., 0] != 0).all() and (rewards.grad[..., 1] != 0).all() and (weight.grad != 0).all()


def test_length_correlations_by_hand_and_in_the_metrics_per_head():
    figures = length_correlations(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert figures["length_pearson"] == pytest.approx(3 / math.sqrt(2 * 14 / 3), abs=1e-9)
    assert figures["length_spearman"] == pytest.approx(1.0)  # the same order
    assert math.isnan(length_correlations(np.ones(3), np.array([1.0, 2.0, 4.0]))["length_pearson"])
    ranks = np.array([[1, 2, 0], [2, 1, 0]])
    lengths = np.array([[1.0, 2.0, 50.0], [3.0, 4.0, 60.0]])  # padding slots' lengths must not count
    quality = np.array([[4.0, 3.0, 0.0], [2.0, 1.0, 0.0]])  # falls as length rises: ρ = −1
    length_head = np.array([[1.0, 2.0, 0.0], [3.0, 4.0, 0.0]])  # rises with length: ρ = +1
    m = head_metrics(np.stack([quality, length_head], axis=-1), ranks, ["a", "b"], lengths)
    assert m["length_spearman"] == pytest.approx(-1.0) and m["length_head/length_spearman"] == pytest.approx(1.0)
    # quality: pair 1 (4 over 3) right, pair 2 prefers slot 1 (1 under 2) wrong; the length head the reverse
    assert m["accuracy"] == 0.5 and m["length_head/accuracy"] == 0.5
    # the sum is 5 everywhere: ties, accuracy ½, and no correlation to speak of
    assert m["sum_head/accuracy"] == 0.5 and math.isnan(m["sum_head/length_spearman"])
    assert "length_pearson" not in preference_metrics(quality, ranks, ["a", "b"])  # no lengths, no figure
