"""PPO maths against values worked out by hand."""

import math

import pytest
import torch

from ppo.losses import (
    AdaptiveKLController,
    entropy_from_logits,
    explained_variance,
    gae,
    kl_penalty,
    logprobs_of,
    masked_mean,
    masked_whiten,
    policy_loss,
    token_rewards,
    value_loss,
)

MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_masked_mean_and_empty_mask():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]])
    assert masked_mean(x, MASK).item() == pytest.approx(15 / 5)
    assert masked_mean(x, torch.zeros_like(x)).item() == 0.0


def test_whitening_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]])
    w = masked_whiten(x, MASK)
    # real entries 1..5: mean 3, population variance 2
    expected = (torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]) - 3) / math.sqrt(2)
    assert torch.allclose(w[MASK.bool()], expected, atol=1e-6)
    assert w[1, 2].item() == 0.0


def test_kl_estimators():
    logp = torch.tensor([[math.log(0.5)]])
    ref = torch.tensor([[math.log(0.25)]])
    # log r = log(0.25 / 0.5) = −log 2
    l2 = math.log(2)
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(l2)
    assert kl_penalty(logp, ref, "k2").item() == pytest.approx(0.5 * l2**2)
    assert kl_penalty(logp, ref, "k3").item() == pytest.approx((0.5 - 1) + l2)
    assert kl_penalty(ref, ref, "k3").item() == 0.0
    with pytest.raises(ValueError):
        kl_penalty(logp, ref, "k4")


def test_token_rewards_put_the_score_on_the_last_real_token():
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 9.0]])
    r = token_rewards(torch.tensor([1.0, 2.0]), kl, kl_coef=0.5, mask=MASK)
    assert torch.allclose(r, torch.tensor([[-0.05, -0.1, -0.15 + 1.0], [-0.2, -0.25 + 2.0, 0.0]]))


def test_gae_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.5, 0.5]])
    mask = torch.ones(1, 3)
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # t=2: δ = 1 + 0 − 0.5 = 0.5 → A2 = 0.5
    # t=1: δ = 0 + 0.9·0.5 − 0.5 = −0.05 → A1 = −0.05 + 0.72·0.5 = 0.31
    # t=0: δ = −0.05 → A0 = −0.05 + 0.72·0.31 = 0.1732
    assert torch.allclose(adv, torch.tensor([[0.1732, 0.31, 0.5]]), atol=1e-6)
    assert torch.allclose(ret, adv + values)


def test_gae_stops_at_the_last_real_token():
    rewards = torch.tensor([[0.0, 1.0, 7.0]])
    values = torch.tensor([[0.0, 0.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert adv.tolist() == [[1.0, 1.0, 0.0]] and ret[0, 2].item() == 0.0


def test_policy_loss_clips_and_counts():
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    new = torch.log(torch.tensor([[0.75, 0.25]]))  # ratios 1.5 and 0.5
    adv = torch.tensor([[1.0, 1.0]])
    loss, stats = policy_loss(new, old, adv, torch.ones(1, 2), clip=0.2)
    # token 0: max(−1.5, −1.2) = −1.2 (clipped); token 1: max(−0.5, −0.8) = −0.5
    assert loss.item() == pytest.approx((-1.2 - 0.5) / 2)
    assert stats["clipfrac"].item() == pytest.approx(0.5)
    # approx KL(π_old‖π) = mean((1/ρ − 1) − log(1/ρ))
    expected = ((1 / 1.5 - 1) + math.log(1.5) + (1 / 0.5 - 1) + math.log(0.5)) / 2
    assert stats["approxkl"].item() == pytest.approx(expected, abs=1e-6)


def test_value_loss_clips():
    values, old, returns = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]), torch.tensor([[2.0, 1.0]])
    loss, stats = value_loss(values, old, returns, torch.ones(1, 2), clip=0.5)
    # token 0: V=1 clipped to 0.5: max((1−2)², (0.5−2)²) = 2.25; token 1: 1
    assert loss.item() == pytest.approx(0.5 * (2.25 + 1) / 2)
    assert stats["clipfrac"].item() == pytest.approx(0.5)


def test_entropy_and_logprobs():
    logits = torch.zeros(1, 1, 4)  # uniform over 4
    assert entropy_from_logits(logits).item() == pytest.approx(math.log(4))
    assert logprobs_of(logits, torch.tensor([[2]])).item() == pytest.approx(math.log(0.25))


def test_explained_variance():
    returns = torch.tensor([[1.0, 2.0, 3.0]])
    assert explained_variance(returns, returns, torch.ones(1, 3)).item() == pytest.approx(1.0)
    assert explained_variance(torch.full((1, 3), 2.0), returns, torch.ones(1, 3)).item() == pytest.approx(0.0)


def test_adaptive_kl_controller_moves_towards_target():
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=100)
    ctl.update(current_kl=12.0, n_steps=10)  # error clipped to +0.2 → β · (1 + 0.02)
    assert ctl.value == pytest.approx(0.204)
    ctl.update(current_kl=3.0, n_steps=10)  # error −0.5 clipped to −0.2
    assert ctl.value == pytest.approx(0.204 * 0.98)


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_kl_estimators_as_loss_terms_pull_where_documented(estimator):
    # a categorical policy π = softmax(θ) over 4 actions and a fixed reference; the loss term's
    # expected gradient, E_{a~π}[∇ k(a)] with the sampling weights held fixed, worked out exactly
    theta = torch.tensor([0.3, -0.2, 1.1, 0.0], requires_grad=True)
    ref = torch.log_softmax(torch.tensor([0.0, 0.5, -0.5, 0.2]), dim=0)
    logp = torch.log_softmax(theta, dim=0)
    weights = logp.exp().detach()
    (weights * kl_penalty(logp, ref, estimator)).sum().backward()
    pi = torch.softmax(theta.detach(), 0)
    theta_r = theta.detach().clone().requires_grad_(True)
    reverse = (torch.softmax(theta_r, 0) * (torch.log_softmax(theta_r, 0) - ref)).sum()  # KL(π ‖ π_ref)
    (grad_reverse,) = torch.autograd.grad(reverse, theta_r)
    theta_f = theta.detach().clone().requires_grad_(True)
    forward = (ref.exp() * (ref - torch.log_softmax(theta_f, 0))).sum()  # KL(π_ref ‖ π)
    (grad_forward,) = torch.autograd.grad(forward, theta_f)
    want = {"k1": torch.zeros(4), "k2": grad_reverse, "k3": grad_forward}[estimator]
    assert torch.allclose(theta.grad, want, atol=1e-6), (estimator, theta.grad, want)
    assert pi.sum() == pytest.approx(1.0)


def test_k1_as_a_loss_term_is_refused_with_the_reason():
    from common.config import ConfigError, parse_args
    from ppo.config import PPOStageConfig

    with pytest.raises(ConfigError, match="k1 as a loss term .* zero expected gradient"):
        parse_args(PPOStageConfig, ["--kl_in_reward", "false", "--kl_estimator", "k1"])
    assert parse_args(PPOStageConfig, ["--kl_in_reward", "false", "--kl_estimator", "k3"]).kl_estimator == "k3"


def test_grpo_by_hand_groups_of_2_and_4_and_an_all_equal_group():
    from ppo.losses import grpo_advantages

    scores = torch.tensor([1.0, 3.0, 2.0, 2.0, 0.0, 4.0, 1.0, 1.0])
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    # group 0: mean 2, std √2 (Bessel) → ∓1/√2; group 1: all equal → 0; group 2: mean 1.5, var 9/3 = 3
    want = torch.tensor([-1 / math.sqrt(2), 1 / math.sqrt(2), 0, 0, -1.5 / math.sqrt(3), 2.5 / math.sqrt(3),
                         -0.5 / math.sqrt(3), -0.5 / math.sqrt(3)])
    assert torch.allclose(grpo_advantages(scores, groups), want, atol=1e-5)
    # "Dr GRPO": centred only
    assert grpo_advantages(scores, groups, scale=False).tolist() == [-1, 1, 0, 0, -1.5, 2.5, -0.5, -0.5]
    # groups need not be contiguous or numbered from 0
    shuffled = torch.tensor([7, 3, 7, 3])
    assert torch.allclose(grpo_advantages(torch.tensor([1.0, 5.0, 3.0, 5.0]), shuffled),
                          torch.tensor([-1 / math.sqrt(2), 0, 1 / math.sqrt(2), 0]), atol=1e-5)


def test_rloo_subtracts_the_mean_of_the_other_samples():
    from ppo.losses import rloo_advantages

    scores = torch.tensor([1.0, 3.0, 2.0, 2.0, 0.0, 4.0, 1.0, 1.0])
    groups = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2])
    # group 2, sample 0: 0 − (4 + 1 + 1)/3 = −2; sample 1: 4 − 2/3; samples 2, 3: 1 − 5/3
    want = torch.tensor([1 - 3, 3 - 1, 0, 0, -2, 4 - 2 / 3, 1 - 5 / 3, 1 - 5 / 3])
    assert torch.allclose(rloo_advantages(scores, groups), want, atol=1e-6)
    with pytest.raises(ValueError, match="at least 2 samples"):
        rloo_advantages(torch.tensor([1.0, 2.0]), torch.tensor([0, 1]))


def test_reinforce_pp_discounts_then_whitens_over_the_batch_and_ignores_padding():
    from ppo.losses import discounted_returns, reinforce_pp_advantages, sequence_to_tokens

    # response 0: 3 tokens, rewards −0.1 (KL), −0.1, 1.0 (score); response 1: 2 tokens then padding
    rewards = torch.tensor([[-0.1, -0.1, 1.0], [0.0, 2.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    g = discounted_returns(rewards, mask, gamma=0.5)
    # G_2 = 1; G_1 = −0.1 + 0.5·1 = 0.4; G_0 = −0.1 + 0.5·0.4 = 0.1 | G_1 = 2, G_0 = 0 + 0.5·2 = 1; padding 0
    assert torch.allclose(g, torch.tensor([[0.1, 0.4, 1.0], [1.0, 2.0, 0.0]]), atol=1e-6)
    adv = reinforce_pp_advantages(rewards, mask, gamma=0.5)
    real = torch.tensor([0.1, 0.4, 1.0, 1.0, 2.0])
    want = (real - real.mean()) / real.std(unbiased=False)
    assert torch.allclose(adv[mask.bool()], want, atol=1e-5) and adv[1, 2] == 0
    assert sequence_to_tokens(torch.tensor([2.0, -1.0]), mask).tolist() == [[2, 2, 2], [-1, -1, 0]]


def test_the_critic_free_estimators_need_two_samples_and_default_their_kl():
    from common.config import ConfigError, parse_args
    from ppo.config import PPOStageConfig

    with pytest.raises(ConfigError, match="samples_per_prompt must be ≥ 2"):
        parse_args(PPOStageConfig, ["--advantage_estimator", "rloo", "--samples_per_prompt", "1", "--mini_batch_size", "4"])
    grpo = parse_args(PPOStageConfig, ["--advantage_estimator", "grpo"])
    assert grpo.kl_in_reward is False and grpo.kl_estimator == "k3" and not grpo.uses_critic  # as GRPO does
    gae_cfg = parse_args(PPOStageConfig, [])
    assert gae_cfg.kl_in_reward is True and gae_cfg.kl_estimator == "k1" and gae_cfg.uses_critic  # unchanged
