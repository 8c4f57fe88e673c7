"""What to label next: how unsure a reward model is about ranking K candidate replies to a prompt,
and which tasks a labelling budget should go to.

Scores come as an array `r` of shape (M, K): M reward models (ensemble members; M = 1 for a
single model) × K candidates of one prompt. Under Bradley–Terry a member's probability that
candidate i is preferred to j is

    p_m(i ≻ j) = σ(r[m, i] − r[m, j]).

Uncertainty of a task (every pair i < j of its candidates considered; a task is as uncertain as
its most uncertain comparison, since one wrong pair spoils the ranking):

- `margin`: the mean model's smallest gap, mapped to [0, 1]: 1 − |2·σ(min_ij |r̄_i − r̄_j|) − 1|
  (1: two candidates scored alike; 0: every pair far apart). Needs one model.
- `ensemble`: the members' disagreement — BALD's mutual information between the label and the
  member, per pair: H(p̄) − mean_m H(p_m), in bits (0: members agree, however unsure each is;
  1: half the members are sure of i ≻ j and half of j ≻ i). Needs M ≥ 2.
- `random`: a seeded uniform draw (the baseline every strategy must beat).

Selection (`select`) takes one task per prompt (its most uncertain) and covers every domain:
round-robin over the domains, each taking its most uncertain task left in turn (within a round,
the domain whose next task is the more uncertain goes first), until the budget is spent. So each
domain with candidates gets at least min(⌊budget / domains⌋, its tasks) — budget 4 over three
domains gives 2/1/1, never 2/2/0 — and a domain that runs out leaves its turns to the others.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import numpy as np

Strategy = Literal["random", "margin", "ensemble"]
STRATEGIES: tuple[str, ...] = ("random", "margin", "ensemble")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _as_scores(scores) -> np.ndarray:
    r = np.asarray(scores, dtype=float)
    if r.ndim == 1:
        r = r[None, :]
    if r.ndim != 2 or r.shape[1] < 2:
        raise ValueError(f"scores must be (members, candidates) with ≥ 2 candidates, got shape {r.shape}")
    return r


def pair_probabilities(scores) -> np.ndarray:
    """(M, P) probabilities p_m(i ≻ j) for the P = K(K−1)/2 pairs i < j, in row-major order."""
    r = _as_scores(scores)
    i, j = np.triu_indices(r.shape[1], k=1)
    return _sigmoid(r[:, i] - r[:, j])


def margin_uncertainty(scores) -> float:
    """1 − |2σ(smallest gap of the mean scores) − 1|: 1 for a tie, → 0 as every pair separates."""
    r = _as_scores(scores).mean(axis=0)
    i, j = np.triu_indices(r.shape[0], k=1)
    gap = float(np.min(np.abs(r[i] - r[j])))
    return 1.0 - abs(2.0 * (1.0 / (1.0 + math.exp(-gap))) - 1.0)


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def ensemble_disagreement(scores) -> float:
    """Largest over pairs of the mutual information H(p̄) − mean_m H(p_m), in bits."""
    p = pair_probabilities(scores)
    if p.shape[0] < 2:
        raise ValueError("ensemble disagreement needs ≥ 2 reward models (members); use margin with one")
    mutual = _entropy_bits(p.mean(axis=0)) - _entropy_bits(p).mean(axis=0)
    return float(np.max(mutual))


def uncertainty(scores, strategy: Strategy) -> float:
    if strategy == "margin":
        return margin_uncertainty(scores)
    if strategy == "ensemble":
        return ensemble_disagreement(scores)
    raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)} (random has no uncertainty), got {strategy!r}")


@dataclass
class Candidate:
    """One task that could be labelled: a prompt's K candidate replies, scored."""

    key: str  # the prompt's identity (one task per prompt is kept)
    domain: str
    scores: object  # (M, K) or (K,) reward-model scores of its candidates
    uncertainty: float = float("nan")


def select(candidates: list[Candidate], strategy: Strategy, budget: int, seed: int = 0) -> list[Candidate]:
    """The `budget` tasks to label, most uncertain first (each with `uncertainty` filled in).

    One task per prompt (its most uncertain), then round-robin over the domains (module doc): each
    domain with candidates gets at least min(⌊budget / domains⌋, its tasks). `random` draws
    uniform uncertainties (seeded) and takes them by the same rule. A budget larger than the pool
    is an error, not a silent cut."""
    if budget < 1:
        raise ValueError(f"budget must be ≥ 1, got {budget}")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    rng = random.Random(seed)
    best: dict[str, Candidate] = {}
    for c in candidates:
        c.uncertainty = rng.random() if strategy == "random" else uncertainty(c.scores, strategy)
        if c.key not in best or c.uncertainty > best[c.key].uncertainty:
            best[c.key] = c
    pool = sorted(best.values(), key=_priority)
    if budget > len(pool):
        raise ValueError(f"budget {budget} is larger than the candidate pool ({len(pool)} prompts); "
                         "lower --budget or add prompts")
    by_domain: dict[str, list[Candidate]] = defaultdict(list)
    for c in pool:
        by_domain[c.domain].append(c)  # each domain's tasks, most uncertain first
    chosen: list[Candidate] = []
    for turn in range(max(len(tasks) for tasks in by_domain.values())):
        this_round = sorted((tasks[turn] for tasks in by_domain.values() if turn < len(tasks)), key=_priority)
        chosen += this_round[: budget - len(chosen)]
        if len(chosen) == budget:
            break
    return sorted(chosen, key=_priority)


def _priority(c: Candidate) -> tuple[float, str]:
    """Sort key: most uncertain first, ties by prompt key (a stable order)."""
    return -c.uncertainty, c.key
