"""Held-out figures of a reward model, from padded rewards and ranks (see losses.py shapes).

- accuracy: share of ordered pairs (i ranked above j) with r_i > r_j (equal rewards: ½);
- mean_margin: mean of r_i − r_j over those pairs;
- ece: expected calibration error of p = σ(r_i − r_j) as the probability that i is preferred,
  over equal-width bins; each pair counts in both orders ((p, 1) and (1 − p, 0)) so the
  labels are balanced;
- accuracy/<domain>: accuracy per domain; reward_mean / reward_std over every response scored;
- length_pearson / length_spearman: ρ(reward, response length in tokens) over every response scored
  (when lengths are given): how much the reward is a length detector;
- with ODIN's two heads (`head_metrics`): the figures above for the quality head (the one the saved
  model scores with), then the same under `length_head/` and `sum_head/` (r_Q + r_L, what the ranking
  loss trains).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from common.stats import spearman
from reward_model.losses import LENGTH, QUALITY


def pair_differences(rewards: np.ndarray, ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(differences r_i − r_j, group index) for every ordered pair i above j."""
    diffs, groups = [], []
    for g in range(rewards.shape[0]):
        for i in range(rewards.shape[1]):
            for j in range(rewards.shape[1]):
                if ranks[g, i] > 0 and ranks[g, j] > 0 and ranks[g, i] < ranks[g, j]:
                    diffs.append(rewards[g, i] - rewards[g, j])
                    groups.append(g)
    return np.asarray(diffs, dtype=np.float64), np.asarray(groups, dtype=np.int64)


def accuracy(diffs: np.ndarray) -> float:
    return float(np.mean((diffs > 0) + 0.5 * (diffs == 0))) if len(diffs) else float("nan")


def expected_calibration_error(diffs: np.ndarray, n_bins: int = 10) -> float:
    p = 1.0 / (1.0 + np.exp(-diffs))
    probs = np.concatenate([p, 1 - p])
    labels = np.concatenate([np.ones_like(p), np.zeros_like(p)])
    bins = np.minimum((probs * n_bins).astype(int), n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(labels[in_bin].mean() - probs[in_bin].mean())
    return float(ece)


def length_correlations(rewards: np.ndarray, lengths: np.ndarray) -> dict[str, float]:
    """Pearson's and Spearman's ρ of (N,) rewards with (N,) lengths; NaN when either is constant."""
    if len(rewards) < 2 or np.ptp(rewards) == 0 or np.ptp(lengths) == 0:
        return {"length_pearson": float("nan"), "length_spearman": float("nan")}
    return {"length_pearson": float(np.corrcoef(rewards, lengths)[0, 1]),
            "length_spearman": spearman(rewards.tolist(), lengths.tolist())}


def preference_metrics(rewards: np.ndarray, ranks: np.ndarray, domains: list[str],
                       lengths: np.ndarray | None = None) -> dict[str, float]:
    """The figures of the module doc for (G, K) rewards and ranks, domains (G), lengths (G, K) or None."""
    rewards, ranks = np.asarray(rewards, dtype=np.float64), np.asarray(ranks)
    diffs, groups = pair_differences(rewards, ranks)
    scored = rewards[ranks > 0]
    out = {
        "accuracy": accuracy(diffs),
        "mean_margin": float(diffs.mean()) if len(diffs) else float("nan"),
        "ece": expected_calibration_error(diffs) if len(diffs) else float("nan"),
        "pairs": float(len(diffs)),
        "reward_mean": float(scored.mean()),
        "reward_std": float(scored.std()),
    }
    if lengths is not None:
        out.update(length_correlations(scored, np.asarray(lengths, dtype=np.float64)[ranks > 0]))
    by_domain: dict[str, list[float]] = defaultdict(list)
    for d, g in zip(diffs, groups):
        by_domain[domains[g]].append(d)
    for name, values in sorted(by_domain.items()):
        out[f"accuracy/{name}"] = accuracy(np.asarray(values))
    return out


def head_metrics(rewards: np.ndarray, ranks: np.ndarray, domains: list[str], lengths: np.ndarray | None) -> dict[str, float]:
    """ODIN's (G, K, 2) rewards (quality, length): the quality head's figures unprefixed, then the
    length head's and the sum's under `length_head/` and `sum_head/`."""
    out = preference_metrics(rewards[..., QUALITY], ranks, domains, lengths)
    for prefix, r in (("length_head", rewards[..., LENGTH]), ("sum_head", rewards.sum(axis=-1))):
        out.update({f"{prefix}/{k}": v for k, v in preference_metrics(r, ranks, domains, lengths).items()})
    return out


def format_metrics(metrics: dict[str, float]) -> str:
    width = max([24, *(len(k) + 1 for k in metrics)])
    return "\n".join(f"  {k:<{width}} {v:.4f}" if isinstance(v, float) else f"  {k:<{width}} {v}" for k, v in metrics.items())
