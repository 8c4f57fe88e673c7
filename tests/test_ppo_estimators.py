"""GSPO's sequence-level ratio and DAPO's pieces against values worked out by hand."""

import math

import pytest
import torch

from ppo.estimators import gspo_policy_loss, gspo_token_policy_loss, informative_groups, overlong_penalty
from ppo.losses import policy_loss

# three responses of 2, 3 and 1 tokens; log ρ = log π − log π_old per token, padding holds a large
# log-ratio that must not count
LOG_RATIO = torch.tensor([[math.log(2), -math.log(2), 5.0], [0.1, 0.2, 0.6], [-0.3, 5.0, 5.0]])
MASK = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
OLD = torch.log(torch.full((3, 3), 0.25))
ADV = torch.tensor([1.0, 2.0, -1.0])


def _new_logprobs() -> torch.Tensor:
    return (OLD + LOG_RATIO).clone().requires_grad_(True)


def test_gspo_clips_the_geometric_mean_ratio_once_per_sequence():
    new = _new_logprobs()
    loss, stats = gspo_policy_loss(new, OLD, ADV, MASK, clip_low=0.2, clip_high=0.28)
    # s_0 = exp((log 2 − log 2)/2) = 1 → −1·1 = −1 (the token ratios 2 and ½ are not clipped one by one)
    # s_1 = exp((0.1 + 0.2 + 0.6)/3) = e^0.3 = 1.3499 > 1.28 → max(−2·1.3499, −2·1.28) = −2.56 (clipped)
    # s_2 = e^−0.3 = 0.7408 < 0.8, A = −1 → max(0.7408, 0.8) = 0.8 (clipped)
    assert loss.item() == pytest.approx((-1 - 2.56 + 0.8) / 3, abs=1e-5)
    assert stats["clipfrac"].item() == pytest.approx(2 / 3)
    assert stats["ratio"].item() == pytest.approx((1 + math.exp(0.3) + math.exp(-0.3)) / 3, abs=1e-5)
    loss.backward()
    # only sequence 0 is unclipped: ∂/∂log π_t of −A·s/3 = −A·s·(1/|y|)/3 = −1/6 on each of its 2 tokens
    want = torch.tensor([[-1 / 6, -1 / 6, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(new.grad, want, atol=1e-6)
    # the token-level surrogate on the same tokens clips 3 of 6: sequence 0's ρ = 2 (A > 0; its ½ is not),
    # sequence 1's e^0.6 = 1.82 (e^0.1, e^0.2 pass) and sequence 2's e^−0.3 = 0.74 (A < 0)
    _, token_stats = policy_loss(new.detach(), OLD, ADV[:, None] * MASK, MASK, clip=0.2, clip_high=0.28)
    assert token_stats["clipfrac"].item() == pytest.approx(0.5)


def test_gspo_token_equals_gspo_with_one_advantage_per_sequence_and_takes_per_token_ones():
    seq_new, tok_new = _new_logprobs(), _new_logprobs()
    seq_loss, _ = gspo_policy_loss(seq_new, OLD, ADV, MASK, clip_low=0.2, clip_high=0.28)
    tok_loss, tok_stats = gspo_token_policy_loss(tok_new, OLD, ADV[:, None] * MASK, MASK, clip_low=0.2, clip_high=0.28)
    seq_loss.backward(), tok_loss.backward()
    assert tok_stats["clipfrac"].item() == pytest.approx(4 / 6)  # every token of the two clipped sequences
    assert tok_loss.item() == pytest.approx(seq_loss.item(), abs=1e-6)
    assert torch.allclose(tok_new.grad, seq_new.grad, atol=1e-6)
    # per-token advantages on sequence 0 (s = 1): tokens −1 and −3, its token mean −2; the others as before
    new = _new_logprobs()
    adv = torch.tensor([[1.0, 3.0, 0.0], [2.0, 2.0, 2.0], [-1.0, 0.0, 0.0]])
    loss, _ = gspo_token_policy_loss(new, OLD, adv, MASK, clip_low=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx((-2 - 2.56 + 0.8) / 3, abs=1e-5)
    loss.backward()
    # each token's gradient is −A_t · s / (|y| · B): −1/6 and −3/6
    assert torch.allclose(new.grad[0], torch.tensor([-1 / 6, -3 / 6, 0.0]), atol=1e-6)


def test_gspo_leaves_rows_without_tokens_out():
    new = _new_logprobs()
    mask = MASK.clone()
    mask[1] = 0  # sequence 1 masked out: s_1 = 1 would otherwise add −2
    loss, stats = gspo_policy_loss(new, OLD, ADV, mask, clip_low=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx((-1 + 0.8) / 2, abs=1e-5) and stats["clipfrac"].item() == pytest.approx(0.5)


def test_informative_groups_drops_groups_whose_rewards_are_all_equal():
    scores = torch.tensor([1.0, 1.0, 0.0, 1.0, 2.0, 2.0, 2.0, 5.0, 0.3, 0.7])
    groups = torch.tensor([4, 4, 9, 9, 0, 0, 0, 7, 2, 2])  # ids need not be contiguous; group 7 has one sample
    assert informative_groups(scores, groups).tolist() == [False, False, True, True, False, False, False, False, True, True]


def test_overlong_penalty_is_dapo_equation_13():
    lengths = torch.tensor([10, 16, 17, 18, 20, 25])
    # max_len 20, cache 4: free up to 16, then (16 − L)/4, −1 from 20 on
    assert overlong_penalty(lengths, max_len=20, cache_len=4).tolist() == [0.0, 0.0, -0.25, -0.5, -1.0, -1.0]
    for bad in (0, 21):
        with pytest.raises(ValueError, match="overlong buffer"):
            overlong_penalty(lengths, max_len=20, cache_len=bad)
