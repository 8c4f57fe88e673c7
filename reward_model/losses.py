"""Reward-model losses: pure functions over padded groups of rewards and ranks.

Shapes: G groups, K = the largest group size. `rewards` (G, K) float — (G, K, 2) for ODIN's two
heads; `ranks` (G, K) int, 1 = best, equal = tied, 0 = padding (no response in that slot);
`lengths` (G, K) response tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def pair_mask(ranks: torch.Tensor) -> torch.Tensor:
    """(G, K, K) bool: entry [g, i, j] is True when response i is ranked strictly above j."""
    valid = ranks > 0
    both = valid[:, :, None] & valid[:, None, :]
    return both & (ranks[:, :, None] < ranks[:, None, :])


def bradley_terry_loss(
    rewards: torch.Tensor, ranks: torch.Tensor, margins: torch.Tensor | None = None, per_group: bool = False
) -> torch.Tensor:
    """−log σ(r_i − r_j − m_ij) over every ordered pair (i above j); ties give no pair.

    `margins` (G, K, K): how far r_i must exceed r_j (0 = plain Bradley–Terry). Averaging:
    over all pairs (`per_group=False`: a ranking of K responses weighs its K(K−1)/2 pairs, so a
    4-response group counts 6× a pair), or per group first and then over groups (`per_group=True`,
    InstructGPT's choice: every ranked prompt counts once, however many responses it has).
    """
    mask = pair_mask(ranks)  # (G, K, K)
    diff = rewards[:, :, None] - rewards[:, None, :]  # (G, K, K): r_i − r_j
    if margins is not None:
        diff = diff - margins
    if not mask.any():
        return rewards.sum() * 0.0  # keeps the graph: a batch of ties only
    if not per_group:
        return -F.logsigmoid(diff[mask]).mean()
    losses = -F.logsigmoid(diff) * mask  # (G, K, K), 0 off the pairs
    pairs = mask.sum(dim=(1, 2))  # (G,)
    has = pairs > 0  # groups of ties only have no pair and no say
    return (losses.sum(dim=(1, 2))[has] / pairs[has]).mean()


def plackett_luce_loss(rewards: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """Mean over groups of the negative Plackett–Luce log-likelihood of the ranking.

    A ranking is read as a sequence of choices: the best response is chosen from all, the
    next from those left, and so on: log L = Σ_i [r_i − log Σ_{j: rank_j ≥ rank_i} exp r_j].
    Ties (Breslow's rule): tied responses are chosen at the same stage, each from the same
    set, which includes its tie-mates, so their rewards are pulled together. The last
    stage's lone response contributes 0. A two-response untied group equals Bradley–Terry.
    """
    valid = ranks > 0  # (G, K)
    # risk[g, i, j]: j is still in the choice set when i is chosen
    risk = valid[:, :, None] & valid[:, None, :] & (ranks[:, None, :] >= ranks[:, :, None])  # (G, K, K)
    scores = rewards[:, None, :].expand_as(risk).masked_fill(~risk, float("-inf"))  # (G, K, K)
    log_denominator = torch.logsumexp(scores, dim=-1)  # (G, K)
    terms = (rewards - log_denominator).masked_fill(~valid, 0.0)  # (G, K)
    return -terms.sum(dim=-1).mean()


def rank_gap_margins(ranks: torch.Tensor, scale: float) -> torch.Tensor:
    """(G, K, K): scale · (rank_j − rank_i − 1) for i above j; adjacent ranks need no margin."""
    gap = (ranks[:, None, :] - ranks[:, :, None]).float()  # rank_j − rank_i
    return (scale * (gap - 1)).clamp(min=0)


def score_margins(scores: torch.Tensor, scale: float) -> torch.Tensor:
    """(G, K, K): scale · (s_i − s_j) from absolute scores (G, K), floored at 0."""
    return (scale * (scores[:, :, None] - scores[:, None, :])).clamp(min=0)


# --- ODIN (Chen et al., ICML 2024): a quality head and a length head on one backbone --------------
# The classifier has 2 outputs: QUALITY (what PPO optimises) and LENGTH (takes the length shortcut).
QUALITY, LENGTH = 0, 1


def pearson(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Pearson's correlation of two (N,) tensors, differentiable; 0 when either is constant
    (the clamp keeps the gradient finite where the square root of 0 would make it NaN)."""
    xc, yc = x - x.mean(), y - y.mean()  # (N,)
    return (xc * yc).sum() / torch.sqrt((xc.pow(2).sum() * yc.pow(2).sum()).clamp(min=eps))


def length_correlation_penalty(quality: torch.Tensor, length_head: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """|ρ(r_Q, L)| − ρ(r_L, L) over the N responses of a batch (each (N,)), in [−1, 2]: the quality
    head is pushed to no linear correlation with length L, either sign; the length head towards +1."""
    lengths = lengths.to(quality.dtype)
    return pearson(quality, lengths).abs() - pearson(length_head, lengths)


def orthogonality_penalty(head_weight: torch.Tensor) -> torch.Tensor:
    """|cos(w_Q, w_L)| of the two heads' weight rows (2, D): 0 when they read orthogonal directions of
    the shared features. Scale-free (the authors' code normalises the rows too), so the penalty cannot
    be met by shrinking a head."""
    w = head_weight.float()
    return F.cosine_similarity(w[QUALITY], w[LENGTH], dim=0, eps=1e-8).abs()


@dataclass
class OdinLoss:
    total: torch.Tensor  # ranking + length_weight · length + orthogonal_weight · orthogonal
    ranking: torch.Tensor  # the ranking loss of r_Q + r_L
    length: torch.Tensor  # length_correlation_penalty
    orthogonal: torch.Tensor  # orthogonality_penalty
    quality_corr: torch.Tensor  # ρ(r_Q, L), detached: for the logs
    length_corr: torch.Tensor  # ρ(r_L, L), detached


def odin_loss(
    rewards: torch.Tensor,
    ranks: torch.Tensor,
    lengths: torch.Tensor,
    head_weight: torch.Tensor,
    ranking_loss: Callable[[torch.Tensor], torch.Tensor],
    length_weight: float = 1.0,
    orthogonal_weight: float = 1.0,
) -> OdinLoss:
    """ODIN's loss on `rewards` (G, K, 2): `ranking_loss` ((G, K) → scalar, e.g. Bradley–Terry with the
    batch's ranks) of the sum r_Q + r_L, plus the length-correlation penalty over the batch's responses
    (`lengths` (G, K) response tokens; padding slots, rank 0, left out) and the heads' orthogonality."""
    valid = ranks > 0  # (G, K)
    quality, length_head, n_tokens = rewards[..., QUALITY][valid], rewards[..., LENGTH][valid], lengths[valid]  # (N,)
    ranking = ranking_loss(rewards.sum(dim=-1))  # (G, K) → scalar
    length = length_correlation_penalty(quality, length_head, n_tokens)
    orthogonal = orthogonality_penalty(head_weight)
    total = ranking + length_weight * length + orthogonal_weight * orthogonal
    n_tokens = n_tokens.to(quality.dtype)
    return OdinLoss(total, ranking, length, orthogonal,
                    pearson(quality, n_tokens).detach(), pearson(length_head, n_tokens).detach())
