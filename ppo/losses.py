"""PPO maths as pure functions over padded token tensors.

Shapes: B responses, T response tokens (padded). `mask` (B, T) is 1 on real response tokens
(up to and including EOS) and 0 on padding. Every reduction is a masked mean, so padding
never counts and an all-padding batch gives 0 rather than NaN.

Which estimator combines which advantage, KL placement, loss aggregation and clip is tabled in
`ppo/estimators.py`, beside the pieces that only the GRPO-family variants use (GSPO, DAPO).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

KLEstimator = Literal["k1", "k2", "k3"]
LossAggMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]

# k3 as a loss term (`kl_penalty(..., clamp=True)`), as verl bounds it: the log-ratio first, so exp
# stays finite (fp32 overflows past 88, and a clamped inf would still give 0 · inf = NaN gradients),
# then the value, so one token cannot dominate the mean. OpenRLHF clamps the value to ±10 too.
KL_LOG_RATIO_CLAMP = 20.0
KL_LOSS_CLAMP = 10.0


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ x·mask / Σ mask; 0 when the mask is empty."""
    total = mask.sum()
    return (x * mask).sum() / total.clamp(min=1)


def aggregate_loss(
    per_token_loss: torch.Tensor, mask: torch.Tensor, mode: LossAggMode = "token-mean", max_tokens: int | None = None
) -> torch.Tensor:
    """A per-token loss (B, T) → scalar, in one of four ways (verl's `loss_agg_mode` names):

    - token-mean: Σ loss·mask / Σ mask, every token of the batch weighs the same (PPO as in
      TRL/OpenRLHF; DAPO's "token-level policy gradient loss"; this project's default for all).
    - seq-mean-token-mean: mean over sequences of each sequence's own token mean (GRPO as in
      DeepSeekMath, Shao et al. 2024): a token of a long reply weighs less than one of a short reply.
    - seq-mean-token-sum: mean over sequences of each sequence's token sum.
    - seq-mean-token-sum-norm: Σ over a sequence's tokens / `max_tokens`, a constant (the generation
      budget, max_new_tokens), then mean over sequences (Dr. GRPO, Liu et al. 2025): every token weighs
      the same whatever its reply's length, and the scale does not move with the batch's lengths.

    The mean over sequences counts only rows with at least one real token, so a row masked out
    entirely (e.g. a dropped group) does not dilute the others; an all-empty batch gives 0.
    """
    if mode == "token-mean":
        return masked_mean(per_token_loss, mask)
    sums = (per_token_loss * mask).sum(dim=1)  # (B,)
    lengths = mask.sum(dim=1)  # (B,)
    if mode == "seq-mean-token-mean":
        per_sequence = sums / lengths.clamp(min=1)
    elif mode == "seq-mean-token-sum":
        per_sequence = sums
    elif mode == "seq-mean-token-sum-norm":
        if max_tokens is None or max_tokens < 1:
            raise ValueError(f"seq-mean-token-sum-norm divides by a constant token budget: max_tokens ≥ 1, got {max_tokens}")
        per_sequence = sums / max_tokens
    else:
        raise ValueError(f"unknown loss aggregation {mode!r} (token-mean, seq-mean-token-mean, seq-mean-token-sum, "
                         "seq-mean-token-sum-norm)")
    return per_sequence.sum() / (lengths > 0).sum().clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x − mean) / std over masked entries (population variance); padding stays 0."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def kl_penalty(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: KLEstimator, clamp: bool = False
) -> torch.Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from samples a ~ π, with log r = log π_ref(a) − log π(a)
    (Schulman, "Approximating KL divergence", 2020):

    - k1 = −log r              (unbiased, high variance, can be negative)
    - k2 = ½ (log r)²          (biased, low variance, ≥ 0)
    - k3 = (r − 1) − log r     (unbiased, low variance, ≥ 0)

    As *values* (a penalty in the reward) each estimates KL(π ‖ π_ref). As a *loss term*
    differentiated through log π on samples from π, they pull differently:
    E[∇k1] = E_π[∇ log π] = 0 (no pull at all); E[∇k2] = E_π[(log π − log π_ref) ∇ log π] =
    ∇ KL(π ‖ π_ref); E[∇k3] = E_π[(1 − π_ref/π) ∇ log π] = ∇ KL(π_ref ‖ π) (the mass-covering
    direction). Tested on an exact expectation in tests/test_ppo_losses.py.

    `clamp=True` is for k3 as a loss term: log r is clamped to ±KL_LOG_RATIO_CLAMP and k3 to
    ≤ KL_LOSS_CLAMP (verl's low_var_kl). k3's gradient in log π is 1 − r, exponential in log r: for a
    token π has made 20 nats less likely than π_ref it is −e^20 ≈ −5·10⁸, against O(1) for the rest
    of the batch. Clamped, such a token's term is at most 10 and its gradient 0 (k3 reaches 10 at
    log r ≈ 2.6 on that side, at −11 on the other). k1 and k2 are left alone: their pull grows at
    most linearly in log r. The value in the reward stays unclamped (`clamp=False`): it carries no
    gradient, and there a large KL is the signal the penalty exists to give, on its own sample.
    """
    log_ratio = ref_logprobs - logprobs  # (B, T)
    if estimator == "k1":
        return -log_ratio
    if estimator == "k2":
        return 0.5 * log_ratio**2
    if estimator == "k3":
        if clamp:
            log_ratio = log_ratio.clamp(-KL_LOG_RATIO_CLAMP, KL_LOG_RATIO_CLAMP)
        k3 = torch.expm1(log_ratio) - log_ratio
        return k3.clamp(max=KL_LOSS_CLAMP) if clamp else k3
    raise ValueError(f"unknown KL estimator {estimator!r} (k1, k2 or k3)")


def token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, kl_coef: float, mask: torch.Tensor
) -> torch.Tensor:
    """Per-token rewards (B, T): −β·KL on every token, plus the sequence score on its last real token."""
    rewards = -kl_coef * kl * mask
    last = (mask.sum(dim=1) - 1).clamp(min=0).long()  # (B,)
    has_tokens = mask.sum(dim=1) > 0
    rewards[torch.arange(len(scores)), last] += scores * has_tokens
    return rewards


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each response, backwards in time.

    δ_t = r_t + γ V_{t+1} − V_t (V after the last real token is 0: the episode ends there),
    A_t = δ_t + γλ A_{t+1}; returns = A + V. Both (B, T), zero on padding.
    """
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(rewards)
    next_advantage = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    next_value = torch.zeros_like(next_advantage)
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_advantage = (delta + gamma * lam * next_advantage) * mask[:, t]
        advantages[:, t] = next_advantage
        next_value = values[:, t]
    return advantages, (advantages + values) * mask


def group_mean_std(scores: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per sample, its group's mean, its group's standard deviation (Bessel-corrected; 0 for a
    group of one) and the group's size. `scores` (B,), `groups` (B,) integer group ids."""
    ids, index, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    sums = torch.zeros(len(ids), dtype=scores.dtype, device=scores.device).index_add_(0, index, scores)
    mean = (sums / counts)[index]  # (B,)
    sq = torch.zeros_like(sums).index_add_(0, index, (scores - mean) ** 2)
    var = sq / (counts - 1).clamp(min=1)
    return mean, var.sqrt()[index], counts[index]


def grpo_advantages(scores: torch.Tensor, groups: torch.Tensor, scale: bool = True, eps: float = 1e-6) -> torch.Tensor:
    """GRPO: A_i = (r_i − mean of its group) / (std of its group + eps); (B,) → (B,).

    `scale=False` skips the division ("Dr GRPO": dividing by the std up-weights groups whose
    rewards barely differ). A group whose rewards are all equal gets A = 0 either way."""
    mean, std, _ = group_mean_std(scores, groups)
    centred = scores - mean
    return centred / (std + eps) if scale else centred


def rloo_advantages(scores: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """RLOO: A_i = r_i − mean of the *other* samples of its group = n/(n−1) · (r_i − group mean);
    (B,) → (B,). Needs groups of at least 2."""
    mean, _, n = group_mean_std(scores, groups)
    if bool((n < 2).any()):
        raise ValueError("RLOO needs at least 2 samples per prompt")
    return (scores - mean) * n / (n - 1)


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = Σ_{k ≥ t} γ^(k−t) r_k within each response; (B, T) → (B, T), zero on padding."""
    rewards = rewards * mask
    out = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        running = (rewards[:, t] + gamma * running) * mask[:, t]
        out[:, t] = running
    return out


def reinforce_pp_advantages(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    """REINFORCE++: the per-token rewards (−β·KL on every token, the score on the last) summed
    into discounted returns, whitened over the whole batch's real tokens; (B, T) → (B, T)."""
    return masked_whiten(discounted_returns(rewards, mask, gamma), mask)


def reinforce_baseline_advantages(
    scores: torch.Tensor, groups: torch.Tensor, kl: torch.Tensor, kl_coef: float, mask: torch.Tensor,
    gamma: float = 1.0,
) -> torch.Tensor:
    """REINFORCE++-baseline (Hu et al. 2025, arXiv 2501.03262; OpenRLHF's `reinforce_baseline`):
    scores (B,), groups (B,) prompt ids, kl (B, T) per-token KL estimate → advantages (B, T).

    1. each score minus its prompt group's mean score (no division by the group's std: a prompt
       whose samples barely differ is not up-weighted);
    2. the per-token KL penalty enters after that, token by token, as in REINFORCE++: reward
       −β·kl_t on every token plus the centred score on the last, summed into returns-to-go with
       γ (1 by default: a response-level score is not discounted). The group mean is of the score
       alone, so a token's KL stays that token's own credit rather than part of the baseline.
       With the KL as a loss term instead (kl_in_reward: false), pass kl_coef = 0;
    3. whitened over the whole batch's real tokens (mean and std), not per group.
    """
    mean, _, _ = group_mean_std(scores, groups)
    rewards = token_rewards(scores - mean, kl, kl_coef, mask)  # (B, T)
    return reinforce_pp_advantages(rewards, mask, gamma)


def sequence_to_tokens(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A sequence-level advantage (B,) on every real token of its response: (B, T)."""
    return advantages[:, None] * mask


def policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, clip: float,
    clip_high: float | None = None, loss_agg_mode: LossAggMode = "token-mean", max_tokens: int | None = None,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate (Schulman et al. 2017), per token: max(−A·ρ, −A·clip(ρ, 1−ε_low, 1+ε_high)),
    ρ = π/π_old, all (B, T), aggregated by `aggregate_loss(…, loss_agg_mode, max_tokens)`.

    ε_low = `clip`; ε_high = `clip_high`, or `clip` when None (symmetric, as before). DAPO's
    clip-higher (Yu et al. 2025) takes ε_high > ε_low (0.28 vs 0.2): a token with A > 0 may
    gain more probability before it is clipped, so unlikely tokens can still rise (less entropy
    collapse), while the floor for A < 0 stays where it was.

    Also returns (token means, whatever the aggregation) the approx KL(π_old ‖ π), the share of
    clipped tokens and the mean ratio. The samples come from π_old, so the KL is k3 with π_old as
    the sampling side: ρ − 1 − log ρ, whose expectation under π_old is exactly KL(π_old ‖ π) (since
    E_π_old[ρ] = 1). For π_old = (½, ½), π = (0.9, 0.1): 0.511 = KL(π_old ‖ π); the reversed form
    (1/ρ − 1) + log ρ gave 1.267. TRL logs ½·(log ρ)² (k2) instead: ≥ 0 too, but biased (0.734 there).

    `weights` (B, T), detached, multiply each token's clipped loss: the rollout correction's
    importance weights when the replies were sampled by another copy of π_old (`rollout_correction_weights`).
    """
    log_ratio = logprobs - old_logprobs  # (B, T) log ρ
    ratio = torch.exp(log_ratio)
    clip_high = clip if clip_high is None else clip_high
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    if weights is not None:
        per_token = per_token * weights
    loss = aggregate_loss(per_token, mask, loss_agg_mode, max_tokens)
    with torch.no_grad():
        stats = {
            "approxkl": masked_mean(kl_penalty(old_logprobs, logprobs, "k3"), mask),  # KL(π_old ‖ π), a ~ π_old
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, stats


RolloutCorrection = Literal["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"]


def rollout_correction_weights(
    old_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor, mask: torch.Tensor, mode: RolloutCorrection, cap: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Importance weights for replies sampled by a different copy of the policy than the one that
    scores π_old — bf16 weights on a CPU, an inference engine (vLLM, SGLang) on a cluster. The
    clipped surrogate assumes the samples came from π_old; they came from π_rollout, so each
    token's loss is reweighted by w = π_old(y_t) / π_rollout(y_t), bounded by `cap` C:

    - token_truncate: w_t = min(w_t, C) per token (truncated importance sampling, as verl and TRL do
      for vLLM rollouts); token_mask: w_t where w_t ≤ C, else 0 (the token is dropped);
    - sequence_truncate / sequence_mask: the reply's product Π_t w_t on each of its tokens, truncated
      at C, or the whole reply dropped above C.

    All (B, T) log-probabilities; → weights (B, T) (0 off the mask), and stats: the weights' mean
    and the share truncated or dropped (token means), and the mismatch KL(π_rollout ‖ π_old) per
    token (k3 with π_rollout the sampling side: w − 1 − log w). For π_old = (½, ¼) and
    π_rollout = (¼, ½) on two tokens, w = (2, ½): token_truncate at C 1.5 gives (1.5, ½),
    token_mask (0, ½), and either sequence mode 1 on both (the product is 1).
    """
    if cap < 1:
        raise ValueError(f"rollout correction cap must be ≥ 1, got {cap}")
    with torch.no_grad():
        log_w = (old_logprobs - rollout_logprobs).float() * mask  # (B, T)
        if mode.startswith("sequence"):
            log_w = log_w.sum(dim=1, keepdim=True).expand_as(log_w)  # (B, T) the reply's log Π_t w_t on each token
        log_cap = math.log(cap)
        over = log_w > log_cap  # (B, T) truncated, or dropped
        weights = torch.exp(log_w.clamp(max=log_cap))
        if mode.endswith("mask"):
            weights = torch.where(over, torch.zeros_like(weights), weights)
        weights = weights * mask
        token_log_w = (old_logprobs - rollout_logprobs).float()
        stats = {
            "weight": masked_mean(weights, mask),
            "capped": masked_mean(over.float(), mask),
            "mismatch_kl": masked_mean(torch.exp(token_log_w) - 1 - token_log_w, mask),
        }
    return weights, stats


def value_loss(
    values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, clip: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss: ½ mean of max((V − R)², (V_old + clip(V − V_old, ±ε) − R)²)."""
    clipped_values = old_values + torch.clamp(values - old_values, -clip, clip)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((clipped > unclipped).float(), mask)}
    return loss, stats


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dim: (B, T, V) → (B, T)."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token]: (B, T, V), (B, T) → (B, T)."""
    return torch.gather(F.log_softmax(logits.float(), dim=-1), 2, tokens.unsqueeze(-1)).squeeze(-1)


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """1 − Var(R − V) / Var(R) over real tokens (1 = perfect critic, ≤ 0 = useless)."""
    var_returns = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    residual = returns - values
    var_residual = masked_mean((residual - masked_mean(residual, mask)) ** 2, mask)
    return 1 - var_residual / var_returns.clamp(min=1e-8)


class AdaptiveKLController:
    """β follows the observed KL towards a target (Ziegler et al., 2019):
    β ← β · (1 + clip(KL/target − 1, −0.2, 0.2) · n_steps / horizon)."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.value *= 1 + error * n_steps / self.horizon


class FixedKLController:
    def __init__(self, kl_coef: float):
        self.value = kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass
