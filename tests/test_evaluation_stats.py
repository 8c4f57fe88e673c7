"""The held-out statistics (common/stats.py) against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.stats import (
    L2_GRID,
    _fit_weighted,
    bootstrap_ci,
    choose_l2,
    cluster_bootstrap,
    cluster_jackknife,
    cluster_means,
    extreme_change,
    fit_logistic,
    length_controlled,
    length_controlled_win_rate,
    length_feature,
    length_support,
    outcome,
    shorter_preferred,
    win_rate,
)


def test_outcome_counts_ties_as_half():
    assert outcome(1.0, 0.0) == 1.0 and outcome(0.0, 1.0) == 0.0 and outcome(0.3, 0.3) == 0.5
    assert outcome(0.30, 0.35, tie_tol=0.1) == 0.5 and outcome(0.30, 0.45, tie_tol=0.1) == 0.0


def test_bootstrap_interval_of_a_small_sample_by_enumeration():
    # means of resamples of [0, 1, 1, 1] are Binomial(4, 3/4) / 4: P(0) = 0.4%, P(≤ 1/4) = 5.1%,
    # P(≤ 3/4) = 68%: the 2.5th percentile is 1/4, the 97.5th is 1
    ci = bootstrap_ci([0, 1, 1, 1], seed=0)
    assert ci["mean"] == 0.75 and ci["low"] == 0.25 and ci["high"] == 1.0 and ci["n"] == 4


def test_bootstrap_degenerate_cases():
    assert bootstrap_ci([0.4]) == {"mean": 0.4, "low": 0.4, "high": 0.4, "n": 1}
    assert bootstrap_ci([2.0, 2.0, 2.0])["low"] == 2.0
    assert math.isnan(bootstrap_ci([])["mean"]) and bootstrap_ci([math.nan, 1.0])["n"] == 1


def test_a_pooled_statistic_resamples_whole_prompts():
    """Two prompts, each with two replies: every resample is (A, A), (A, B), (B, A) or (B, B), so
    the pooled share of ones is 1, ½ or 0 — and the interval runs from 0 to 1 around the point ½."""
    values = np.array([1.0, 1.0, 0.0, 0.0])
    ci = cluster_bootstrap(lambda rows: float(values[rows].mean()), ["a", "a", "b", "b"], seed=0, resamples=400)
    assert ci == {"mean": 0.5, "low": 0.0, "high": 1.0, "n": 2}
    same = cluster_bootstrap(lambda rows: float(values[rows].mean()), ["a", "a", "a", "a"])  # one prompt: no spread
    assert same == {"mean": 0.5, "low": 0.5, "high": 0.5, "n": 1}
    nan = cluster_bootstrap(lambda rows: float("nan"), ["a", "b"])
    assert math.isnan(nan["mean"]) and nan["n"] == 2


def test_jackknife_by_hand():
    """Three prompts with per-prompt values 1, 2, 6 (the first has two replies, 1 and 1): the pooled
    mean of the four replies is 10/4; leaving each prompt out gives 8/2 = 4, 8/3, 4/3; their mean is
    8/3 and SE = √(2/3 · Σ (θ₋ᵢ − 8/3)²) = √(2/3 · 32/9)."""
    values = np.array([1.0, 1.0, 2.0, 6.0])
    ci = cluster_jackknife(lambda rows: float(values[rows].mean()), ["a", "a", "b", "c"])
    se = math.sqrt(2 / 3 * ((4 - 8 / 3) ** 2 + 0 + (4 / 3 - 8 / 3) ** 2))
    assert se == pytest.approx(math.sqrt(2 / 3 * 32 / 9))
    assert ci["mean"] == 2.5 and ci["n"] == 3
    assert ci["low"] == pytest.approx(2.5 - 1.96 * se) and ci["high"] == pytest.approx(2.5 + 1.96 * se)
    # for a plain mean of one value per prompt it is the textbook s/√n
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0])
    plain = cluster_jackknife(lambda rows: float(x[rows].mean()), range(6))
    assert plain["high"] - plain["mean"] == pytest.approx(1.96 * x.std(ddof=1) / math.sqrt(6))
    assert cluster_jackknife(lambda rows: 1.0, ["a", "a"]) == {"mean": 1.0, "low": 1.0, "high": 1.0, "n": 1}


def test_a_count_of_distinct_items_keeps_its_figure_inside_its_interval():
    """40 prompts, each answered with words no other reply uses: distinct-1 is 1. A resample with
    replacement repeats prompts, so every resample reads below 1 and the percentile interval
    excludes the figure; the jackknife's does not."""
    replies = [[f"w{p}a", f"w{p}b", f"w{p}c"] for p in range(40)]

    def distinct(rows):
        toks = [t for i in rows for t in replies[i]]
        return len(set(toks)) / len(toks)

    assert cluster_bootstrap(distinct, range(40), resamples=200)["high"] < 1.0  # the bias the jackknife avoids
    ci = cluster_jackknife(distinct, range(40))
    assert ci["low"] <= ci["mean"] == 1.0 <= ci["high"]


def test_win_rate_averages_within_prompts_then_resamples_prompts():
    # prompt a: a win and a tie → 0.75; prompt b: two losses → 0. Mean 0.375; resampling the two
    # prompts gives 0, 0.375 or 0.75 (¼, ½, ¼): the interval is [0, 0.75]
    outcomes = [1.0, 0.5, 0.0, 0.0]
    prompts = ["a", "a", "b", "b"]
    assert cluster_means(outcomes, prompts) == [0.75, 0.0]
    wr = win_rate(outcomes, prompts, seed=0)
    assert wr["mean"] == 0.375 and wr["low"] == 0.0 and wr["high"] == 0.75
    assert wr["n"] == 2 and wr["pairs"] == 4


def test_logistic_fit_reads_the_win_rate_at_zero_length_difference():
    # longer replies (x = +1) win 9 of 10, shorter ones (x = −1) 5 of 10; the fit passes through both
    # rates, so θ = (logit 0.9 + logit 0.5) / 2 = ln 3 and σ(θ) = 0.75 — the raw win-rate is 0.70
    x = np.array([1.0] * 10 + [-1.0] * 10)
    y = np.array([1.0] * 9 + [0.0] + [1.0] * 5 + [0.0] * 5)
    theta, phi = fit_logistic(x, y, l2=0.0)
    assert theta == pytest.approx(math.log(3), abs=1e-8)
    assert phi == pytest.approx((math.log(9) - 0.0) / 2, abs=1e-8)
    # Δ = ±20 tokens → tanh(±1), the same two groups; a small ridge (10⁻³ per pair) moves it little.
    # (The penalty is now given per pair and, left out, chosen by cross-validation: see below.)
    lc = length_controlled(y, x * 20, l2=1e-3)
    assert lc["win_rate"] == pytest.approx(0.75, abs=0.005) and lc["slope"] > 0


def test_length_controlled_equals_raw_when_length_does_not_matter_and_handles_ties():
    y = np.array([1.0, 0.0, 0.5, 1.0, 0.0, 0.5])  # the same outcomes at Δ = +5 and Δ = −5
    diff = np.array([5.0, 5.0, 5.0, -5.0, -5.0, -5.0])
    lc = length_controlled(y, diff)
    assert lc["win_rate"] == pytest.approx(0.5, abs=1e-9) and lc["slope"] == pytest.approx(0.0, abs=1e-9)
    # no length difference at all: the feature is 0 and the fit is the raw mean
    assert length_controlled([1, 1, 0, 1], [0, 0, 0, 0])["win_rate"] == pytest.approx(0.75, abs=1e-9)


def test_winning_by_length_alone_is_level_once_controlled():
    # the longer reply always wins: raw 0.75 (more pairs where the policy is longer), controlled ≈ 0.5
    diff = [10.0] * 30 + [-10.0] * 10
    y = [1.0] * 30 + [0.0] * 10
    prompts = list(range(40))
    lc = length_controlled_win_rate(y, diff, prompts, seed=0, resamples=200)
    assert np.mean(y) == 0.75
    assert 0.35 < lc["mean"] < 0.65 and lc["slope"] > 3 and lc["low"] <= lc["mean"] <= lc["high"]


def test_shorter_preferred_skips_equal_lengths():
    a, b = [1.0, 0.0, 2.0, 5.0], [0.0, 1.0, 1.0, 5.0]
    la, lb = [10, 20, 5, 7], [20, 10, 5, 9]
    # pair 1: a shorter, a higher → shorter wins; pair 2: b shorter, b higher → shorter wins;
    # pair 3: equal lengths, left out; pair 4: a shorter, tie → ½
    out = shorter_preferred(a, b, la, lb, ["p", "q", "r", "s"])
    assert out["pairs"] == 3 and out["mean"] == pytest.approx((1 + 1 + 0.5) / 3)


def test_weighted_fits_are_fits_on_repeated_rows():
    # the bootstrap weights each pair by how often its prompt was drawn: a weight of 2 is the row twice,
    # 0 leaves it out; rows of one call are independent fits with their own penalty
    x = np.array([1.0, 1.0, -1.0, -1.0, 0.5])
    y = np.array([1.0, 0.0, 0.5, 0.0, 1.0])
    w = np.array([[2.0, 1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    beta = _fit_weighted(x, y, w, np.array([0.3, 0.0]))
    rows = [0, 0, 1, 2, 4]
    assert beta[0] == pytest.approx(fit_logistic(x[rows], y[rows], l2=0.3), abs=1e-8)
    assert beta[1] == pytest.approx(fit_logistic(x, y, l2=0.0), abs=1e-8)


def test_cross_validation_credits_length_only_where_it_predicts():
    rng = np.random.default_rng(0)
    diff = rng.normal(10, 30, 200)
    prompts = list(range(100)) * 2
    independent = (rng.random(200) < 0.6).astype(float)
    by_length = (diff > 0).astype(float)  # the longer reply always wins: raw ≈ 0.63, at equal length ½
    assert choose_l2(length_feature(diff), by_length, prompts) == L2_GRID[0]
    lc = length_controlled(by_length, diff, prompts)
    # (a tanh cannot be a step at Δ = 0, so the penalised fit stops short of ½: more than half-way there)
    assert by_length.mean() > 0.6 and abs(lc["win_rate"] - 0.5) < abs(by_length.mean() - 0.5) / 2 and lc["slope"] > 5
    # outcomes unrelated to length: whatever penalty wins, the slope stays small and LC ≈ raw
    lc = length_controlled(independent, diff, prompts)
    assert abs(lc["slope"]) < 0.6 and lc["win_rate"] == pytest.approx(independent.mean(), abs=0.03)
    # no length variation at all: every penalty fits alike and the largest is kept
    assert choose_l2(np.zeros(6), np.array([1.0, 0, 1, 1, 0, 1]), list("aabbcc")) == L2_GRID[-1]


def test_length_support_needs_a_tenth_of_pairs_on_each_side():
    assert length_support([50.0] * 9 + [-3.0]) is None  # 10% at or below equal length
    assert length_support([0.0] * 2 + [50.0] * 18) is None  # an equal-length pair counts for both sides
    assert length_support([-5.0, 5.0]) is None
    reason = length_support([50.0] * 19 + [-3.0])
    assert reason.startswith("the policy's reply is longer in 95% of pairs (median Δ +50 tokens)")
    assert "shorter in 100%" in length_support([-20.0, -30.0, -40.0])


def test_extreme_change_uses_alpacaeval_bounds():
    # raw 0.2: down past min(0.2 − 0.05, 0.2 − 0.1) = 0.10, up past max(0.2 + 0.2, 0.2 + 0.1) = 0.40
    assert extreme_change(0.2, 0.09) and not extreme_change(0.2, 0.11)
    assert extreme_change(0.2, 0.41) and not extreme_change(0.2, 0.39)
    # raw 0.5: down past 0.375, up past 0.625
    assert extreme_change(0.5, 0.37) and not extreme_change(0.5, 0.38) and extreme_change(0.5, 0.63)


def test_withheld_and_degenerate_results():
    out = length_controlled_win_rate([1.0, 0.0, 1.0], [60.0, 80.0, 120.0], ["a", "b", "c"])
    assert out["mean"] is None and out["low"] is None and "longer in 100%" in out["withheld"]
    assert out["n"] == 3 and out["pairs"] == 3
    same = length_controlled_win_rate([1.0, 1.0, 1.0, 1.0], [5.0, -5.0, 3.0, -1.0], ["a", "b", "c", "d"])
    assert same["mean"] == same["low"] == same["high"] == 1.0 and "withheld" not in same


def simulate(seed: int, diff_of, p_win_of, prompts: int = 60, samples: int = 2):
    """Outcomes of `prompts` × `samples` pairs: Δ drawn by `diff_of(rng, n)`, a win with probability
    `p_win_of(Δ)`; each prompt's samples share it."""
    rng = np.random.default_rng(seed)
    n = prompts * samples
    diff = np.round(diff_of(rng, n))
    wins = (rng.random(n) < p_win_of(diff)).astype(float)
    return wins, diff, list(np.repeat(np.arange(prompts), samples))


def test_mixed_sign_lengths_independent_outcomes_the_interval_covers_the_truth():
    # true win-rate 0.7 at every length; the policy is ±40 tokens around +10
    covered, means = 0, []
    for seed in range(20):
        y, d, p = simulate(seed, lambda rng, n: rng.normal(10, 40, n), lambda d: np.full(d.shape, 0.7))
        lc = length_controlled_win_rate(y, d, p, seed=seed, resamples=300)
        covered += lc["low"] <= 0.7 <= lc["high"]
        means.append(lc["mean"])
    assert covered >= 16 and np.mean(means) == pytest.approx(0.7, abs=0.03)


def test_one_sign_lengths_are_withheld_never_a_wild_number():
    # the policy 50–150 tokens longer on every pair, outcomes independent of length (truth 0.7): the
    # unchecked fit read anything from 0 to 1 here
    for seed in range(20):
        y, d, p = simulate(seed, lambda rng, n: rng.uniform(50, 150, n), lambda d: np.full(d.shape, 0.7))
        lc = length_controlled_win_rate(y, d, p, seed=seed, resamples=100)
        assert lc["withheld"] or abs(lc["mean"] - 0.7) < 0.15
        assert lc["mean"] is None and "longer in 100%" in lc["withheld"]


def test_a_judge_that_prefers_length_is_corrected_towards_even():
    # no difference in quality (½ at equal length), the longer reply favoured: P(win) = σ(2·tanh(Δ/sd)),
    # the policy mostly but not always longer (Δ ~ N(30, 40)): the raw rate is inflated, LC moves to ½
    def p_win(d):
        return 1 / (1 + np.exp(-2 * np.tanh(d / d.std())))

    moved, covered = 0, 0
    for seed in range(10):
        y, d, p = simulate(seed, lambda rng, n: rng.normal(30, 40, n), p_win)
        lc = length_controlled_win_rate(y, d, p, seed=seed, resamples=300)
        assert y.mean() > 0.55 and lc["slope"] > 0.5
        moved += abs(lc["mean"] - 0.5) < abs(y.mean() - 0.5)
        covered += lc["low"] <= 0.5 <= lc["high"]
    assert moved == 10 and covered >= 8
