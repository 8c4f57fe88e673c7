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
    # approx KL(π_old‖π): the two tokens are π_old's two actions, each with probability ½, so the mean
    # is the expectation under π_old: exact KL = ½ log(.5/.75) + ½ log(.5/.25) = ½ log(4/3) = 0.1438
    assert stats["approxkl"].item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)


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


@pytest.mark.parametrize(
    "pi_old, pi, exact",
    [
        # KL(π_old‖π) = ½ log(.5/.9) + ½ log(.5/.1) = ½ (−0.5878 + 1.6094) = 0.5108; the reversed
        # k3 the stat used to report, E_π_old[(1/ρ − 1) + log ρ], was ½ (0.1433 + 2.3906) = 1.267
        ((0.5, 0.5), (0.9, 0.1), 0.5108),
        # .7 log 7 + .2 log(2/3) + .1 log(1/6) = 1.3621 − 0.0811 − 0.1792 = 1.1019 (the reversed form: 2.948)
        ((0.7, 0.2, 0.1), (0.1, 0.3, 0.6), 1.1019),
    ],
)
def test_approx_kl_is_kl_of_old_from_new_in_expectation_under_old(pi_old, pi, exact):
    # one token per action, each weighted by π_old in the mask: the masked mean is E_{a~π_old}[estimate]
    old = torch.log(torch.tensor([pi_old]))
    new = torch.log(torch.tensor([pi]))
    weights = torch.tensor([pi_old])
    _, stats = policy_loss(new, old, torch.zeros_like(old), weights, clip=0.2)
    kl = sum(p * math.log(p / q) for p, q in zip(pi_old, pi))
    assert kl == pytest.approx(exact, abs=1e-4)
    assert stats["approxkl"].item() == pytest.approx(kl, abs=1e-6)


def test_clip_higher_raises_only_the_ceiling_for_positive_advantages():
    ratios = torch.tensor([[1.25, 1.5, 0.7, 1.25]])
    old = torch.log(torch.full((1, 4), 0.5))
    new = torch.log(0.5 * ratios)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    mask = torch.ones(1, 4)
    # ε = 0.2 both sides: max(−1.25, −1.2) = −1.2 (clipped); max(−1.5, −1.2) = −1.2 (clipped);
    # A < 0: max(0.7, 0.8) = 0.8 (clipped at the floor); max(1.25, 1.2) = 1.25 (pessimistic: not clipped)
    loss, stats = policy_loss(new, old, adv, mask, clip=0.2)
    assert loss.item() == pytest.approx((-1.2 - 1.2 + 0.8 + 1.25) / 4) and stats["clipfrac"].item() == 0.75
    same, _ = policy_loss(new, old, adv, mask, clip=0.2, clip_high=0.2)
    assert same.item() == loss.item()
    # DAPO's ε_high = 0.28: the ceiling is 1.28, so 1.25 passes unclipped and 1.5 stops at 1.28; the floor is unchanged
    loss, stats = policy_loss(new, old, adv, mask, clip=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx((-1.25 - 1.28 + 0.8 + 1.25) / 4) and stats["clipfrac"].item() == 0.5


def test_loss_aggregation_modes_by_hand():
    from ppo.losses import aggregate_loss

    # two real rows (3 and 2 tokens) and one row masked out entirely, which no mode counts
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0], [7.0, 7.0, 7.0]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    want = {
        "token-mean": (15 / 5, 1 / 5, 1 / 5),  # every token 1/5
        "seq-mean-token-mean": ((2 + 4.5) / 2, 1 / 6, 1 / 4),  # a token of the longer row weighs less
        "seq-mean-token-sum": ((6 + 9) / 2, 1 / 2, 1 / 2),
        "seq-mean-token-sum-norm": ((6 / 4 + 9 / 4) / 2, 1 / 8, 1 / 8),  # / max_tokens = 4, then / 2 rows
    }
    for mode, (value, grad_long, grad_short) in want.items():
        x.grad = None
        out = aggregate_loss(x, mask, mode, max_tokens=4)
        out.backward()
        assert out.item() == pytest.approx(value), mode
        expected_grad = torch.tensor([[grad_long] * 3, [grad_short] * 2 + [0.0], [0.0] * 3])
        assert torch.allclose(x.grad, expected_grad), (mode, x.grad)
    assert aggregate_loss(x, torch.zeros_like(mask), "seq-mean-token-mean").item() == 0.0
    with pytest.raises(ValueError, match="max_tokens ≥ 1"):
        aggregate_loss(x, mask, "seq-mean-token-sum-norm")
    with pytest.raises(ValueError, match="unknown loss aggregation"):
        aggregate_loss(x, mask, "sum")
    # policy_loss aggregates through it: with ρ = 1 the per-token loss is −A
    adv = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]])
    logp = torch.zeros(2, 3)
    loss, _ = policy_loss(logp, logp, adv, MASK, clip=0.2, loss_agg_mode="seq-mean-token-mean")
    assert loss.item() == pytest.approx(-3.25)
    loss, _ = policy_loss(logp, logp, adv, MASK, clip=0.2, loss_agg_mode="seq-mean-token-sum-norm", max_tokens=4)
    assert loss.item() == pytest.approx(-(6 / 4 + 9 / 4) / 2)


def test_k3_as_a_clamped_loss_term_cannot_be_dominated_by_one_token():
    # log r = log π_ref − log π per token: 0.5, −0.5, then one token π has made 30 nats less likely than π_ref
    ref = torch.zeros(1, 3)
    logp = torch.tensor([[-0.5, 0.5, -30.0]], requires_grad=True)
    mask = torch.ones(1, 3)
    k3_a, k3_b = math.exp(0.5) - 1.5, math.exp(-0.5) - 0.5  # 0.1487, 0.1065
    raw = kl_penalty(logp, ref, "k3")
    assert raw[0, 2].item() == pytest.approx(math.exp(30) - 31, rel=1e-5)  # ≈ 1.07e13: the mean is that token
    (g_raw,) = torch.autograd.grad(masked_mean(raw, mask), logp)
    assert g_raw[0, 2].item() == pytest.approx((1 - math.exp(30)) / 3, rel=1e-5)
    clamped = kl_penalty(logp, ref, "k3", clamp=True)
    loss = masked_mean(clamped, mask)
    assert loss.item() == pytest.approx((k3_a + k3_b + 10) / 3, abs=1e-5)
    (grad,) = torch.autograd.grad(loss, logp)
    # d k3 / d log π = 1 − r: the ordinary tokens keep their pull (1 − e^0.5, 1 − e^−0.5, over 3 tokens), the extreme one has none
    assert torch.allclose(grad, torch.tensor([[(1 - math.exp(0.5)) / 3, (1 - math.exp(-0.5)) / 3, 0.0]]), atol=1e-6)
    # past fp32's exp range (log r = 100) the unclamped term is inf and its gradient NaN; clamped, both stay finite
    far = torch.tensor([[-100.0]], requires_grad=True)
    (g_far,) = torch.autograd.grad(kl_penalty(far, torch.zeros(1, 1), "k3").sum(), far)
    assert torch.isnan(g_far).all() or torch.isinf(g_far).all()
    value = kl_penalty(far, torch.zeros(1, 1), "k3", clamp=True)
    (g_far,) = torch.autograd.grad(value.sum(), far)
    assert value.item() == 10.0 and g_far.item() == 0.0
    # k3 = e^5 − 6 = 142.4 within the log-ratio clamp is still capped at 10; the reward's value is not clamped
    assert kl_penalty(torch.tensor([[-5.0]]), torch.zeros(1, 1), "k3", clamp=True).item() == 10.0
    assert kl_penalty(torch.tensor([[-5.0]]), torch.zeros(1, 1), "k3").item() == pytest.approx(math.exp(5) - 6, rel=1e-6)
    # k1 and k2 are untouched by the clamp (their pull is at most linear in log r)
    for estimator in ("k1", "k2"):
        assert torch.equal(kl_penalty(logp, ref, estimator, clamp=True), kl_penalty(logp, ref, estimator))


def test_reinforce_baseline_subtracts_the_group_mean_then_adds_per_token_kl_and_whitens_the_batch():
    from ppo.losses import reinforce_baseline_advantages

    scores = torch.tensor([1.0, 3.0, 2.0, 2.0])
    groups = torch.tensor([0, 0, 1, 1])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [1.0, 0.0]])
    kl = torch.tensor([[0.2, 0.4], [0.2, 9.0], [0.0, 0.2], [0.4, 9.0]])  # 9.0 sits on padding
    adv = reinforce_baseline_advantages(scores, groups, kl, kl_coef=0.5, mask=mask)
    # centred scores −1, 1, 0, 0; token rewards −0.5·kl plus the centred score on the last real token:
    # [−0.1, −0.2 − 1] | [−0.1 + 1] | [0, −0.1] | [−0.2]; returns-to-go with γ = 1:
    returns = torch.tensor([-1.3, -1.2, 0.9, -0.1, -0.1, -0.2])
    want = (returns - returns.mean()) / returns.std(unbiased=False)
    assert torch.allclose(adv[mask.bool()], want, atol=1e-5)
    assert adv[1, 1] == 0 and adv[3, 1] == 0
    # a prompt all of whose samples score 10 more gets exactly the same advantages: only differences count
    shifted = reinforce_baseline_advantages(scores + 10 * (groups == 1), groups, kl, kl_coef=0.5, mask=mask)
    assert torch.allclose(shifted, adv, atol=1e-6)
    # with the KL as a loss term instead (β = 0 here): returns −1, −1, 1, 0, 0, 0 before whitening
    no_kl = reinforce_baseline_advantages(scores, groups, kl, kl_coef=0.0, mask=mask)
    plain = torch.tensor([-1.0, -1.0, 1.0, 0.0, 0.0, 0.0])
    assert torch.allclose(no_kl[mask.bool()], (plain - plain.mean()) / plain.std(unbiased=False), atol=1e-5)
