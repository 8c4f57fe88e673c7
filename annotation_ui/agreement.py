"""Agreement between people who ranked the same responses (the annotation app's admin figures, the
evaluation stage's human win-rates): inter-annotator agreement, agreement with the majority, gold accuracy.

A ranking of K responses implies, for each unordered pair (i < j), a *decision*: 0 = i better,
1 = j better, 2 = tie. Measures (well-kept libraries do the statistics):
- Krippendorff's α on the rankings themselves (`krippendorff`, ordinal): units are (task, response),
  values the ranks each annotator gave;
- Fleiss' κ on the pairwise decisions (`statsmodels`), over the (task, pair) items that have the
  most common number of raters (Fleiss needs equal counts);
- Cohen's κ for each pair of annotators on the items both decided (`scikit-learn`), and their mean;
- each annotator's agreement with the majority: the share of their decisions equal to the strict
  majority decision of the item's raters (items without one are left out);
- gold accuracy: on gold tasks, the share of an annotator's decisions equal to the gold ranking's.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from itertools import combinations

import numpy as np


def decisions(ranks: list[int]) -> dict[tuple[int, int], int]:
    """{(i, j): 0 if i ranked better, 1 if j, 2 if tied} for all i < j."""
    return {(i, j): 0 if ranks[i] < ranks[j] else 1 if ranks[j] < ranks[i] else 2
            for i, j in combinations(range(len(ranks)), 2)}


def krippendorff_alpha(rankings: dict[int, dict[str, list[int]]]) -> float:
    """rankings: task id → {annotator: ranks}. NaN when fewer than two annotators overlap."""
    import krippendorff

    annotators = sorted({a for by in rankings.values() for a in by})
    units = [(t, k) for t, by in sorted(rankings.items()) for k in range(len(next(iter(by.values()))))]
    data = np.full((len(annotators), len(units)), np.nan)
    for u, (t, k) in enumerate(units):
        for a, ranks in rankings[t].items():
            data[annotators.index(a), u] = ranks[k]
    if len(annotators) < 2 or not np.any(np.sum(~np.isnan(data), axis=0) >= 2):
        return math.nan
    if np.nanmin(data) == np.nanmax(data):  # one value everywhere: agreement is total but α is undefined
        return math.nan
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal"))


def pairwise_items(rankings: dict[int, dict[str, list[int]]]) -> dict[tuple[int, int, int], dict[str, int]]:
    """(task, i, j) → {annotator: decision}."""
    items: dict[tuple[int, int, int], dict[str, int]] = defaultdict(dict)
    for t, by in rankings.items():
        for a, ranks in by.items():
            for (i, j), d in decisions(ranks).items():
                items[(t, i, j)][a] = d
    return items


def fleiss(items: dict) -> float:
    from statsmodels.stats.inter_rater import fleiss_kappa

    counts = Counter(len(v) for v in items.values() if len(v) >= 2)
    if not counts:
        return math.nan
    n = counts.most_common(1)[0][0]
    table = np.array([[sum(1 for d in v.values() if d == c) for c in range(3)] for v in items.values() if len(v) == n])
    if len(table) < 2:
        return math.nan
    value = fleiss_kappa(table, method="fleiss")
    return float(value) if np.isfinite(value) else math.nan


def cohen(items: dict) -> dict[str, float]:
    from sklearn.metrics import cohen_kappa_score

    annotators = sorted({a for v in items.values() for a in v})
    out = {}
    for a, b in combinations(annotators, 2):
        shared = [(v[a], v[b]) for v in items.values() if a in v and b in v]
        if len(shared) >= 2:
            x, y = zip(*shared)
            value = cohen_kappa_score(x, y, labels=[0, 1, 2])
            out[f"{a}~{b}"] = float(value) if np.isfinite(value) else math.nan
    return out


def majority_agreement(items: dict) -> dict[str, float]:
    hits: dict[str, list[int]] = defaultdict(list)
    for v in items.values():
        if len(v) < 2:
            continue
        top, count = Counter(v.values()).most_common(1)[0]
        if count * 2 <= len(v):
            continue  # no strict majority
        for a, d in v.items():
            hits[a].append(int(d == top))
    return {a: sum(h) / len(h) for a, h in sorted(hits.items())}


def gold_accuracy(gold: dict[int, list[int]], rankings: dict[int, dict[str, list[int]]]) -> dict[str, float]:
    hits: dict[str, list[int]] = defaultdict(list)
    for t, truth in gold.items():
        want = decisions(truth)
        for a, ranks in rankings.get(t, {}).items():
            got = decisions(ranks)
            hits[a] += [int(got[p] == want[p]) for p in want]
    return {a: sum(h) / len(h) for a, h in sorted(hits.items())}


def quality_report(rankings: dict[int, dict[str, list[int]]], gold: dict[int, list[int]] | None = None) -> dict:
    """All the figures for the admin page: rankings of non-gold tasks, and gold answers."""
    items = pairwise_items(rankings)
    kappas = cohen(items)
    finite = [k for k in kappas.values() if not math.isnan(k)]
    return {
        "tasks": len(rankings),
        "krippendorff_alpha": krippendorff_alpha(rankings) if rankings else math.nan,
        "fleiss_kappa": fleiss(items),
        "cohen_kappa": kappas,
        "cohen_kappa_mean": sum(finite) / len(finite) if finite else math.nan,
        "agreement_with_majority": majority_agreement(items),
        "gold_accuracy": gold_accuracy(gold or {}, rankings),
    }
