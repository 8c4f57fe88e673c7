"""BCQ's pure functions against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from bcq_offline.constraint import allowed_actions, constrain
from bcq_offline.losses import (
    double_q_targets,
    polyak_update,
    td_loss,
    token_rewards,
)


def logp(*probs: float) -> torch.Tensor:
    return torch.tensor(probs).log()


def test_mask_keeps_tokens_within_tau_of_the_best():
    # G = (0.5, 0.25, 0.15, 0.1): ratios to the max 1, 0.5, 0.3, 0.2
    g = logp(0.5, 0.25, 0.15, 0.1)
    assert allowed_actions(g, 0.3).tolist() == [True, True, True, False]  # 0.3 ≥ 0.3 passes (edge)
    assert allowed_actions(g, 0.31).tolist() == [True, True, False, False]
    assert allowed_actions(g, 1e-9).tolist() == [True] * 4  # τ → 0: everything G gives mass to
    assert allowed_actions(g, 0.999).tolist() == [True, False, False, False]  # τ → 1: G's argmax only


def test_mask_ties_at_the_maximum_all_survive():
    g = logp(0.4, 0.4, 0.2)
    assert allowed_actions(g, 0.99).tolist() == [True, True, False]


def test_top_token_survives_even_when_probabilities_underflow():
    g = torch.tensor([-1000.0, -1001.0, -2000.0])  # exp() is 0 for all of them
    assert allowed_actions(g, 0.5).tolist() == [True, False, False]


@pytest.mark.parametrize("tau", [0.0, 1.0, -0.1, 1.5])
def test_tau_outside_the_open_interval_is_refused(tau):
    with pytest.raises(ValueError, match=r"tau must lie in \(0, 1\)"):
        allowed_actions(logp(0.5, 0.5), tau)


def test_additive_mask_never_lets_a_disallowed_token_win():
    q = torch.tensor([-5.0, -3.0, -1.0])  # the best Q is on a disallowed token
    allowed = torch.tensor([True, True, False])
    out = constrain(q, allowed)
    assert out[:2].tolist() == [-5.0, -3.0] and out[2] == float("-inf")
    assert out.argmax() == 1
    # a multiplicative 0/1 mask would have picked the disallowed token (0 > −3)
    assert (q * allowed).argmax() == 2


def test_double_q_target_online_picks_target_evaluates():
    # one response, two tokens; V = 3
    q_online_next = torch.tensor([[[1.0, 5.0, 9.0], [0.0, 0.0, 0.0]]])
    q_target_next = torch.tensor([[[10.0, 20.0, 30.0], [7.0, 7.0, 7.0]]])
    allowed_next = torch.tensor([[[True, True, False], [True, True, True]]])
    rewards = torch.tensor([[0.0, 2.0]])
    terminal = torch.tensor([[0.0, 1.0]])
    y = double_q_targets(q_online_next, q_target_next, allowed_next, rewards, terminal, gamma=0.5)
    # t=0: online argmax among allowed {0, 1} is 1 → target value 20 → 0 + 0.5·20 = 10
    # t=1: terminal → the reward alone, 2
    assert y.tolist() == [[10.0, 2.0]]


def test_n_step_double_q_targets_by_hand():
    # one response of four tokens (terminal at t=3), reward 4 at the end, one of two tokens (terminal at t=1);
    # V = 2: the online network prefers token 1 everywhere, the target values token 1 at 10·(t+1)
    q_online_next = torch.tensor([[[0.0, 1.0]] * 4, [[0.0, 1.0]] * 4])
    q_target_next = torch.tensor([[[0.0, 10.0], [0.0, 20.0], [0.0, 30.0], [0.0, 40.0]]] * 2)
    allowed = torch.ones(2, 4, 2, dtype=torch.bool)
    rewards = torch.tensor([[0.0, 0.0, 0.0, 4.0], [0.0, 3.0, 0.0, 0.0]])
    terminal = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    y2 = double_q_targets(q_online_next, q_target_next, allowed, rewards, terminal, gamma=0.5, n_step=2)
    # response 1: t=0 → r0 + ½r1 + ¼·Q'(s2) = ¼·20 = 5; t=1 → ¼·Q'(s3) = 7.5;
    #             t=2 → r2 + ½·r3 = 2 (the end is inside the window: no bootstrap); t=3 → 4
    # response 2: t=0 → r0 + ½·r1 = 1.5; t=1 → 3; t=2, t=3 are padding (no reward, already ended → 0)
    assert y2.tolist()[0] == [5.0, 7.5, 2.0, 4.0]
    assert y2.tolist()[1][:2] == [1.5, 3.0]
    # n ≥ T: the discounted return of the logged response, no bootstrap at all
    y_mc = double_q_targets(q_online_next, q_target_next, allowed, rewards, terminal, gamma=0.5, n_step=8)
    assert y_mc.tolist()[0] == [0.5, 1.0, 2.0, 4.0]
    # n = 1 is the one-step target
    y1 = double_q_targets(q_online_next, q_target_next, allowed, rewards, terminal, gamma=0.5)
    assert y1.tolist()[0] == [5.0, 10.0, 15.0, 4.0]
    with pytest.raises(ValueError, match="n_step"):
        double_q_targets(q_online_next, q_target_next, allowed, rewards, terminal, gamma=0.5, n_step=0)


def test_token_rewards_land_on_each_last_real_token():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    r, terminal = token_rewards(torch.tensor([2.0, -1.0]), mask)
    assert r.tolist() == [[0, 0, 2, 0], [-1, 0, 0, 0]]
    assert terminal.tolist() == [[0, 0, 1, 0], [1, 0, 0, 0]]


def test_huber_td_loss_by_hand():
    q = torch.tensor([[0.0, 3.0, 9.0]])
    y = torch.tensor([[0.5, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    # |0.5| ≤ 1 → ½·0.25 = 0.125; |3| > 1 → 3 − ½ = 2.5; the masked token adds nothing
    assert td_loss(q, y, mask).item() == pytest.approx((0.125 + 2.5) / 2)


def test_polyak_update_moves_the_target_by_the_rate():
    target, online = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        target.weight.fill_(0.0), target.bias.fill_(0.0)
        online.weight.fill_(1.0), online.bias.fill_(-2.0)
    polyak_update(target, online, 0.1)
    assert target.weight.tolist() == [[pytest.approx(0.1)] * 2] and target.bias.item() == pytest.approx(-0.2)
    polyak_update(target, online, 1.0)  # a hard copy
    assert torch.equal(target.weight, online.weight)
    with pytest.raises(ValueError):
        polyak_update(target, online, 0.0)
    assert math.isfinite(target.bias.item())
