"""Policy-gradient estimator variants of the GRPO family, as pure functions; `ppo/losses.py` holds
the shared maths (advantages, KL estimators, `policy_loss`, `aggregate_loss`).

Which estimator combines which pieces (the papers' own choices; this project's trainer uses
token-mean and a symmetric ε = 0.2 for all of them unless configured otherwise):

| estimator                | advantage                        | KL to π_ref     | aggregation             | ratio, ε_lo/ε_hi |
|--------------------------|----------------------------------|-----------------|-------------------------|------------------|
| PPO [1]                  | GAE per token (critic), whitened | k1 in reward    | token-mean              | token, 0.2/0.2   |
| GRPO [2]                 | (r − group mean) / group std     | k3 loss term    | seq-mean-token-mean     | token            |
| Dr. GRPO [3]             | r − group mean                   | not its subject | seq-mean-token-sum-norm | token            |
| RLOO [4]                 | r − mean of the other samples    | in reward       | token-mean              | token            |
| REINFORCE++ [5]          | returns of −β·KL_t + r, whitened | in reward       | token-mean              | token            |
| REINFORCE++-baseline [5] | as REINFORCE++, r − group mean   | reward or loss  | token-mean              | token            |
| DAPO [6]                 | as GRPO, uniform groups dropped  | none            | token-mean              | token, 0.2/0.28  |
| GSPO [7]                 | as GRPO                          | none            | per sequence            | seq, 3e-4/4e-4   |

"returns": per-token returns-to-go (γ = 1), the KL penalty on every token, the score r on the last;
"whitened": over the whole batch's real tokens. DAPO also adds a soft overlong penalty to r.
[1] Ouyang et al. 2022 (InstructGPT); [2] Shao et al. 2024 (DeepSeekMath); [3] Liu et al. 2025,
"Understanding R1-Zero-like training"; [4] Ahmadian et al. 2024; [5] Hu et al. 2025, arXiv 2501.03262;
[6] Yu et al. 2025, arXiv 2503.14476; [7] Zheng et al. 2025, arXiv 2507.18071.

Functions: PPO's and GRPO's surrogate is `losses.policy_loss` (clip-higher through `clip_high`,
aggregation through `loss_agg_mode`); advantages are `losses.gae`, `grpo_advantages`
(`scale=False` for Dr. GRPO), `rloo_advantages`, `reinforce_pp_advantages`,
`reinforce_baseline_advantages`; here are GSPO's losses and DAPO's dynamic-sampling filter and
overlong penalty.
"""

from __future__ import annotations

import torch

from ppo.losses import aggregate_loss, kl_penalty, masked_mean


def _sequence_log_ratio(logprobs: torch.Tensor, old_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(1/|y_i|) Σ_t (log π − log π_old) over each row's real tokens: (B, T) → (B,); 0 for an empty row."""
    return ((logprobs - old_logprobs) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def gspo_policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
    clip_low: float, clip_high: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GSPO (Group Sequence Policy Optimization, Zheng et al. 2025, arXiv 2507.18071): one
    importance ratio per sequence, the geometric mean of its tokens' ratios,
    s_i = exp((1/|y_i|) Σ_t (log π − log π_old)), clipped per sequence to [1 − ε_low, 1 + ε_high],
    the sequence advantage applied once: loss = mean_i max(−A_i·s_i, −A_i·clip(s_i)).

    logprobs, old_logprobs, mask (B, T); advantages (B,) (GRPO's group-normalised ones in the paper).
    The paper's ε are far smaller than PPO's (3e-4, 4e-4): a length-normalised ratio moves little.
    Rows without real tokens are left out of the mean. Stats: approx KL(π_old ‖ π) per token (as
    `policy_loss`), the share of sequences clipped and the mean s_i.
    """
    lengths = mask.sum(dim=1)  # (B,)
    ratio = torch.exp(_sequence_log_ratio(logprobs, old_logprobs, mask))  # (B,) s_i
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    present = (lengths > 0).to(ratio.dtype)  # (B,)
    n = present.sum().clamp(min=1)
    loss = (torch.maximum(unclipped, clipped) * present).sum() / n
    with torch.no_grad():
        stats = {
            "approxkl": masked_mean(kl_penalty(old_logprobs, logprobs, "k3"), mask),
            "clipfrac": ((clipped > unclipped).to(ratio.dtype) * present).sum() / n,
            "ratio": (ratio * present).sum() / n,
        }
    return loss, stats


def gspo_token_policy_loss(
    logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
    clip_low: float, clip_high: float, weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GSPO-token (Zheng et al. 2025): per-token advantages A (B, T) with a sequence-level ratio.

    s_{i,t} = sg[s_i] · π(y_t) / sg[π(y_t)]: its value is the sequence's s_i on every token, its
    gradient s_i ∇log π(y_t); per token max(−A·s, −A·clip(s)), aggregated seq-mean-token-mean.
    With A_{i,t} = A_i on every token it equals `gspo_policy_loss` in value and gradient. Stats as
    `policy_loss`'s (token means); `weights` (B, T) as there (the rollout correction's).
    """
    seq = _sequence_log_ratio(logprobs, old_logprobs, mask).detach()  # (B,)
    ratio = torch.exp(logprobs - logprobs.detach() + seq[:, None])  # (B, T)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    if weights is not None:
        per_token = per_token * weights
    loss = aggregate_loss(per_token, mask, "seq-mean-token-mean")
    with torch.no_grad():
        stats = {
            "approxkl": masked_mean(kl_penalty(old_logprobs, logprobs, "k3"), mask),
            "clipfrac": masked_mean((clipped > unclipped).float(), mask),
            "ratio": masked_mean(ratio, mask),
        }
    return loss, stats


def informative_groups(scores: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """DAPO's dynamic-sampling filter (Yu et al. 2025, arXiv 2503.14476, §3.2): scores (B,), groups
    (B,) prompt ids → (B,) bool, False for every sample of a group whose scores are all exactly equal.

    Such a group has zero advantage under every group baseline (GRPO, Dr. GRPO, RLOO, GSPO), so it
    adds no gradient, only dilutes the batch; DAPO drops it and samples more prompts until the
    batch is full. Pass the task reward (DAPO filters on accuracy 0 < acc < 1), not a sum that
    includes per-sample KL. A group of one counts as uniform.
    """
    ids, index = torch.unique(groups, return_inverse=True)
    highest = torch.full((len(ids),), -torch.inf, dtype=scores.dtype, device=scores.device)
    highest = highest.scatter_reduce(0, index, scores, reduce="amax")
    lowest = torch.full_like(highest, torch.inf).scatter_reduce(0, index, scores, reduce="amin")
    return (highest != lowest)[index]


def overlong_penalty(lengths: torch.Tensor, max_len: int, cache_len: int) -> torch.Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13), added to the reward: lengths (B,) → (B,).

    0 for L ≤ max_len − cache_len; ((max_len − cache_len) − L) / cache_len in between, falling
    linearly to −1 at max_len; −1 beyond. max_len is the generation budget (max_new_tokens; DAPO:
    20480 with a 4096 cache), L counts the response's tokens including EOS, as the response mask does.
    """
    if not 0 < cache_len <= max_len:
        raise ValueError(f"the overlong buffer must be in (0, max_len = {max_len}], got {cache_len}")
    return ((max_len - cache_len - lengths.float()) / cache_len).clamp(min=-1.0, max=0.0)
