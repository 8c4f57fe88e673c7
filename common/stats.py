"""Held-out statistics every "is it better?" figure goes through (the evaluation stage, BCQ's
own evaluation, human win-rates): bootstrap intervals, paired win-rates with ties, and the
length-controlled win-rate.

Comparisons are paired: policy A's reply to prompt p (sample k) against the baseline's reply
to the same prompt and sample index. Replies to one prompt are not independent, so intervals
resample *prompts* (a cluster bootstrap): each prompt contributes the mean of its pairs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

RESAMPLES = 2000


def bootstrap_ci(values: Sequence[float], seed: int = 0, resamples: int = RESAMPLES) -> dict[str, float]:
    """Mean and 95% percentile-bootstrap interval (`scipy.stats.bootstrap`); NaNs are left out,
    and one value (or all equal) gives a zero-width interval."""
    x = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if x.size == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    if x.size == 1 or np.all(x == x[0]):
        return {"mean": float(x.mean()), "low": float(x.mean()), "high": float(x.mean()), "n": int(x.size)}
    from scipy.stats import bootstrap

    res = bootstrap((x,), np.mean, n_resamples=resamples, method="percentile", random_state=seed)
    return {"mean": float(x.mean()), "low": float(res.confidence_interval.low),
            "high": float(res.confidence_interval.high), "n": int(x.size)}


def outcome(score: float, baseline: float, tie_tol: float = 0.0) -> float:
    """1 if `score` beats `baseline`, 0 if it loses, ½ for a tie (|difference| ≤ tie_tol)."""
    if abs(score - baseline) <= tie_tol:
        return 0.5
    return 1.0 if score > baseline else 0.0


def cluster_means(values: Sequence[float], clusters: Sequence[Hashable]) -> list[float]:
    """The mean of `values` within each cluster, in order of first appearance."""
    groups: dict[Hashable, list[float]] = defaultdict(list)
    for v, c in zip(values, clusters, strict=True):
        groups[c].append(v)
    return [float(np.mean(g)) for g in groups.values()]


def win_rate(outcomes: Sequence[float], prompts: Sequence[Hashable], seed: int = 0,
             resamples: int = RESAMPLES) -> dict[str, float]:
    """Share of paired comparisons won (ties = ½), with a 95% interval over prompts.

    `n` in the result counts prompts; `pairs` counts comparisons.
    """
    out = bootstrap_ci(cluster_means(outcomes, prompts), seed, resamples)
    return {**out, "pairs": len(outcomes)}


# ---------------------------------------------------------------------------------------------
# Length-controlled win-rate
# ---------------------------------------------------------------------------------------------


def length_feature(length_diff: np.ndarray, scale: float | None = None) -> np.ndarray:
    """tanh(Δ / s): the length difference (policy − baseline, tokens) squashed by its standard
    deviation s, so a few very long replies do not dominate the fit (AlpacaEval 2 does the same)."""
    s = float(np.std(length_diff)) if scale is None else scale
    if s == 0:
        return np.zeros_like(length_diff, dtype=float)
    return np.tanh(length_diff / s)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> tuple[float, float]:
    """(θ, φ) maximising Σ y log p + (1 − y) log(1 − p) − ½·l2·φ², p = σ(θ + φ x), by Newton's method.

    y may be fractional (a tie is ½). The small ridge on the slope φ keeps the fit finite when
    length separates wins from losses perfectly; the intercept θ is not penalised.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    design = np.stack([np.ones_like(x), x], axis=1)  # (n, 2)
    ridge = np.diag([0.0, l2])
    beta = np.zeros(2)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        grad = design.T @ (y - p) - ridge @ beta
        hess = design.T @ (design * (p * (1 - p))[:, None]) + ridge + 1e-9 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(beta[0]), float(beta[1])


def length_controlled(outcomes: Sequence[float], length_diff: Sequence[float]) -> dict[str, float]:
    """Win-rate read at zero length difference: σ(θ) of the logistic fit of the outcome on
    tanh(Δlength / sd); `slope` φ > 0 means the judge favours the longer reply."""
    y, diff = np.asarray(outcomes, dtype=float), np.asarray(length_diff, dtype=float)
    theta, phi = fit_logistic(length_feature(diff), y)
    return {"win_rate": 1.0 / (1.0 + math.exp(-theta)), "slope": phi}


def length_controlled_win_rate(outcomes: Sequence[float], length_diff: Sequence[float], prompts: Sequence[Hashable],
                               seed: int = 0, resamples: int = 1000) -> dict[str, float]:
    """The length-controlled win-rate with a 95% interval over prompts (the fit repeated on each
    resample of prompts, every pair of a drawn prompt included)."""
    y, diff = np.asarray(outcomes, dtype=float), np.asarray(length_diff, dtype=float)
    point = length_controlled(y, diff)
    scale = float(np.std(diff))
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        groups[p].append(i)
    members = list(groups.values())
    if len(members) < 2 or len(set(y.tolist())) < 2:
        return {"mean": point["win_rate"], "low": point["win_rate"], "high": point["win_rate"],
                "slope": point["slope"], "n": len(members), "pairs": int(y.size)}
    rng = np.random.default_rng(seed)
    feature = length_feature(diff, scale)  # one scale for every resample: the same feature, refitted
    draws = []
    for _ in range(resamples):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(members), len(members))])
        theta, _ = fit_logistic(feature[rows], y[rows])
        draws.append(1.0 / (1.0 + math.exp(-theta)))
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"mean": point["win_rate"], "low": float(low), "high": float(high), "slope": point["slope"],
            "n": len(members), "pairs": int(y.size)}


def shorter_preferred(score_a: Sequence[float], score_b: Sequence[float], len_a: Sequence[float],
                      len_b: Sequence[float], prompts: Sequence[Hashable], seed: int = 0) -> dict[str, float]:
    """Among pairs of unequal length, the share where the judge scored the shorter reply higher
    (ties ½), with an interval over prompts: 0.5 = no length preference."""
    values, where = [], []
    for sa, sb, la, lb, p in zip(score_a, score_b, len_a, len_b, prompts, strict=True):
        if la == lb:
            continue
        short, long_ = (sa, sb) if la < lb else (sb, sa)
        values.append(outcome(short, long_))
        where.append(p)
    if not values:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0, "pairs": 0}
    return win_rate(values, where, seed)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (`scipy.stats.spearmanr`); NaN when either side is constant."""
    from scipy.stats import spearmanr

    if len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(spearmanr(x, y).statistic)
