"""The held-out statistics (common/stats.py) against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from common.stats import (
    bootstrap_ci,
    cluster_means,
    fit_logistic,
    length_controlled,
    length_controlled_win_rate,
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
    # as the stage calls it: Δ = ±20 tokens → tanh(±1), the same two groups; the small ridge moves it little
    lc = length_controlled(y, x * 20)
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
