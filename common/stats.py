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
from collections.abc import Callable, Hashable, Sequence

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


def cluster_rows(clusters: Sequence[Hashable]) -> list[np.ndarray]:
    """The items' indices of each cluster, in order of first appearance."""
    members: dict[Hashable, list[int]] = defaultdict(list)
    for i, c in enumerate(clusters):
        members[c].append(i)
    return [np.array(v) for v in members.values()]


def cluster_bootstrap(statistic: Callable[[np.ndarray], float], clusters: Sequence[Hashable], seed: int = 0,
                      resamples: int = RESAMPLES) -> dict[str, float]:
    """A statistic of a whole set (not a mean of per-item values: a correlation) with a 95%
    percentile interval from resampling its clusters (prompts) with replacement. Not for a
    statistic that counts distinct items (distinct-n): a prompt drawn twice repeats itself, so every
    resample reads lower than the set itself — use `cluster_jackknife`.
    `statistic(indices)` takes the items' indices (an item appears as often as its cluster is drawn);
    resamples where it is NaN are left out. `n` is the number of clusters."""
    groups = cluster_rows(clusters)
    point = statistic(np.arange(len(clusters)))
    if len(groups) < 2 or math.isnan(point):
        return {"mean": float(point), "low": float(point), "high": float(point), "n": len(groups)}
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(resamples):
        value = statistic(np.concatenate([groups[g] for g in rng.integers(0, len(groups), len(groups))]))
        if not math.isnan(value):
            draws.append(value)
    low, high = np.percentile(draws, [2.5, 97.5]) if draws else (math.nan, math.nan)
    return {"mean": float(point), "low": float(low), "high": float(high), "n": len(groups)}


def cluster_jackknife(statistic: Callable[[np.ndarray], float], clusters: Sequence[Hashable]) -> dict[str, float]:
    """A statistic of a whole set with a 95% normal interval from the delete-one-cluster jackknife:
    `statistic(indices)` recomputed without each cluster (prompt) in turn, standard error
    √((m − 1)/m · Σ (θ₋ᵢ − θ̄₋)²) over the m finite leave-one-out values, interval θ ± 1.96·SE. For
    statistics a with-replacement resample would bias (distinct-n); deterministic. `n` is the
    number of clusters."""
    groups = cluster_rows(clusters)
    point = statistic(np.arange(len(clusters)))
    if len(groups) < 2 or math.isnan(point):
        return {"mean": float(point), "low": float(point), "high": float(point), "n": len(groups)}
    left_out = []
    for g in range(len(groups)):
        value = statistic(np.concatenate(groups[:g] + groups[g + 1:]))
        if not math.isnan(value):
            left_out.append(value)
    if len(left_out) < 2:
        return {"mean": float(point), "low": math.nan, "high": math.nan, "n": len(groups)}
    m, values = len(left_out), np.asarray(left_out)
    se = math.sqrt((m - 1) / m * float(((values - values.mean()) ** 2).sum()))
    return {"mean": float(point), "low": float(point - 1.96 * se), "high": float(point + 1.96 * se), "n": len(groups)}


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

# The win-rate at equal length is read off the fit at Δ = 0; with (almost) every pair on one side
# of zero that is an extrapolation which the data cannot check — with outcomes independent of
# length and the policy 50–150 tokens longer, the unchecked fit returned anything from 0 to 1.
# A tenth of the pairs on each side (an equal-length pair counts for both) keeps the reading
# within the data.
MIN_SIDE_SHARE = 0.10
# Penalties on the length slope, per pair: from "length may explain a lot" (10⁻³) to "length
# explains nothing" (10², where the fit is the raw win-rate); chosen by cross-validation.
L2_GRID = tuple(float(10.0**k) for k in np.arange(-3.0, 2.01, 0.5))
CV_FOLDS = 5


def length_feature(length_diff: np.ndarray, scale: float | None = None) -> np.ndarray:
    """tanh(Δ / s): the length difference (policy − baseline, tokens) squashed by its standard
    deviation s, so a few very long replies do not dominate the fit (AlpacaEval 2 does the same)."""
    s = float(np.std(length_diff)) if scale is None else scale
    if s == 0:
        return np.zeros_like(length_diff, dtype=float)
    return np.tanh(length_diff / s)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    from scipy.special import expit  # no overflow warnings for a resample that is all wins

    return expit(z)


def _fit_weighted(x: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: np.ndarray, iters: int = 100) -> np.ndarray:
    """R logistic fits at once by Newton's method: row r maximises
    Σᵢ wᵣᵢ [yᵢ log pᵢ + (1 − yᵢ) log(1 − pᵢ)] − ½·l2ᵣ·φ², p = σ(θ + φ x).

    x, y: (n,); weights: (R, n) (a bootstrap resample's counts, or 0/1 for a cross-validation
    fold); l2: (R,). Returns (R, 2): θ, φ per row. The intercept θ is not penalised.
    """
    beta = np.zeros((weights.shape[0], 2))  # (R, 2)
    for _ in range(iters):
        p = _sigmoid(beta[:, :1] + beta[:, 1:] * x)  # (R, n)
        r = weights * (y - p)  # (R, n)
        g = np.stack([r.sum(1), (r * x).sum(1) - l2 * beta[:, 1]], axis=1)  # (R, 2)
        h = weights * p * (1 - p)  # (R, n)
        h00, h01, h11 = h.sum(1) + 1e-9, (h * x).sum(1), (h * x * x).sum(1) + l2 + 1e-9
        det = h00 * h11 - h01**2
        step = np.stack([(h11 * g[:, 0] - h01 * g[:, 1]) / det, (h00 * g[:, 1] - h01 * g[:, 0]) / det], axis=1)
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 100) -> tuple[float, float]:
    """(θ, φ) maximising Σ y log p + (1 − y) log(1 − p) − ½·l2·φ², p = σ(θ + φ x), by Newton's method.

    y may be fractional (a tie is ½). The ridge on the slope φ keeps the fit finite when length
    separates wins from losses perfectly; the intercept θ is not penalised.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    theta, phi = _fit_weighted(x, y, np.ones((1, x.size)), np.array([l2]), iters)[0]
    return float(theta), float(phi)


def _folds(groups: Sequence[Hashable], k: int, seed: int) -> np.ndarray:
    """(k, n) 0/1 masks: fold f holds out every pair of a seeded f-th share of the groups."""
    names = list(dict.fromkeys(groups))
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[j]: i % k for i, j in enumerate(order)}
    of_pair = np.array([fold_of[g] for g in groups])
    return (of_pair[None, :] == np.arange(k)[:, None]).astype(float)


def choose_l2(x: np.ndarray, y: np.ndarray, groups: Sequence[Hashable], seed: int = 0) -> float:
    """The per-pair penalty on the length slope (from `L2_GRID`) with the best held-out
    log-likelihood over k folds of prompts (k = min(5, prompts)); on a tie, the larger penalty.
    Fewer than 2 prompts: the largest (length is not credited without evidence)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    k = min(CV_FOLDS, len(set(groups)))
    if k < 2:
        return L2_GRID[-1]
    held = _folds(groups, k, seed)  # (k, n)
    train = np.repeat(1.0 - held, len(L2_GRID), axis=0)  # (k·G, n): fold-major, every penalty
    l2 = np.tile(np.array(L2_GRID), k) * train.sum(1)
    beta = _fit_weighted(x, y, train, l2)  # (k·G, 2)
    p = np.clip(_sigmoid(beta[:, :1] + beta[:, 1:] * x), 1e-12, 1 - 1e-12)
    loglik = np.repeat(held, len(L2_GRID), axis=0) * (y * np.log(p) + (1 - y) * np.log(1 - p))
    score = loglik.sum(1).reshape(k, len(L2_GRID)).sum(0)  # (G,) summed over folds
    best = np.flatnonzero(score >= score.max() - 1e-9 * abs(score.max()))
    return L2_GRID[int(best[-1])]


def length_controlled(outcomes: Sequence[float], length_diff: Sequence[float], prompts: Sequence[Hashable] | None = None,
                      l2: float | None = None, seed: int = 0) -> dict[str, float]:
    """Win-rate read at zero length difference: σ(θ) of the logistic fit of the outcome on
    tanh(Δlength / sd), with a per-pair ridge `l2` on the slope (None: chosen by `choose_l2`
    over folds of `prompts`, each pair its own prompt when None); `slope` φ > 0 means the judge
    favours the longer reply."""
    y, diff = np.asarray(outcomes, dtype=float), np.asarray(length_diff, dtype=float)
    x = length_feature(diff)
    if l2 is None:
        l2 = choose_l2(x, y, list(range(y.size)) if prompts is None else list(prompts), seed)
    theta, phi = fit_logistic(x, y, l2 * y.size)
    return {"win_rate": float(_sigmoid(theta)), "slope": phi, "l2": l2}


def length_support(length_diff: Sequence[float]) -> str | None:
    """Why the data cannot support a reading at Δ = 0 (in words), or None when they can: fewer
    than `MIN_SIDE_SHARE` of the pairs at or beyond equal length on one side."""
    d = np.asarray(length_diff, dtype=float)
    if d.size == 0:
        return "no pairs"
    longer, shorter = float(np.mean(d > 0)), float(np.mean(d < 0))
    if min(np.mean(d <= 0), np.mean(d >= 0)) >= MIN_SIDE_SHARE:  # an equal-length pair counts for both sides
        return None
    side, share = ("longer", longer) if longer > shorter else ("shorter", shorter)
    return (f"the policy's reply is {side} in {100 * share:.0f}% of pairs (median Δ {np.median(d):+.0f} tokens); "
            f"under {100 * MIN_SIDE_SHARE:.0f}% of pairs lie on the other side of equal length, so the fit would "
            "extrapolate to Δ = 0")


def extreme_change(raw: float, controlled: float) -> bool:
    """AlpacaEval 2's warning: the controlled win-rate moved more than 10 points and more than a
    quarter of the way to 0 (down) or to 1 (up) from the raw one."""
    return controlled < min(raw - raw / 4, raw - 0.10) or controlled > max(raw + (1 - raw) / 4, raw + 0.10)


def length_controlled_win_rate(outcomes: Sequence[float], length_diff: Sequence[float], prompts: Sequence[Hashable],
                               seed: int = 0, resamples: int = 1000) -> dict:
    """The length-controlled win-rate with a 95% interval over prompts, or the reason it is withheld.

    Withheld (`mean` None, `withheld` the reason) when `length_support` finds too few pairs on one
    side of equal length. Otherwise the slope's penalty is chosen once by cross-validation over
    prompts and the fit repeated on each resample of prompts (every pair of a drawn prompt
    included, one length scale for all). `caution` is set when the result moved from the raw
    win-rate as far as AlpacaEval 2 warns about (`extreme_change`).
    """
    y, diff = np.asarray(outcomes, dtype=float), np.asarray(length_diff, dtype=float)
    groups: dict[Hashable, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        groups[p].append(i)
    sizes = {"n": len(groups), "pairs": int(y.size)}
    reason = length_support(diff)
    if reason is not None:
        return {"mean": None, "low": None, "high": None, "withheld": reason, **sizes}
    if len(set(y.tolist())) < 2:  # every pair the same outcome: so is the reading at any length
        return {"mean": float(y[0]), "low": float(y[0]), "high": float(y[0]), "slope": 0.0, **sizes}
    point = length_controlled(y, diff, list(prompts), seed=seed)
    out = {"mean": point["win_rate"], "low": point["win_rate"], "high": point["win_rate"], "slope": point["slope"],
           "l2": point["l2"], **sizes}
    if len(groups) >= 2:
        pair_group = np.empty(y.size, dtype=int)
        for g, rows in enumerate(groups.values()):
            pair_group[rows] = g
        draws = np.random.default_rng(seed).integers(0, len(groups), (resamples, len(groups)))  # prompts drawn
        counts = np.stack([np.bincount(row, minlength=len(groups)) for row in draws])  # (R, prompts)
        weights = counts[:, pair_group].astype(float)  # (R, n): each pair as often as its prompt was drawn
        beta = _fit_weighted(length_feature(diff), y, weights, point["l2"] * weights.sum(1))
        low, high = np.percentile(_sigmoid(beta[:, 0]), [2.5, 97.5])
        out["low"], out["high"] = float(low), float(high)
    if extreme_change(float(np.mean(y)), out["mean"]):
        out["caution"] = (f"differs from the raw {100 * np.mean(y):.0f}% by more than AlpacaEval 2 trusts (10 points and a "
                          "quarter of the way to 0 or 1): the length term carries much of the result")
    return out


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
