"""Reward-model losses and metrics against values worked out by hand."""

import math

import numpy as np
import pytest
import torch

from reward_model.losses import (
    bradley_terry_loss,
    pair_mask,
    plackett_luce_loss,
    rank_gap_margins,
    score_margins,
)
from reward_model.metrics import expected_calibration_error, preference_metrics


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
