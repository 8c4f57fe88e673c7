"""Annotation quality for the admin tab: the agreement figures of `annotation_ui.agreement` over a store's labels."""

from __future__ import annotations

from collections import defaultdict

from annotation_ui.agreement import gold_accuracy, quality_report


def store_report(store) -> dict:
    """`quality_report` over a store's latest unflagged labels."""
    names = {u.id: u.name for u in store.users()}
    tasks = {t.id: t for t in store.tasks()}
    rankings: dict[int, dict[str, list[int]]] = defaultdict(dict)
    gold_rankings: dict[int, dict[str, list[int]]] = defaultdict(dict)
    for label in store.labels():
        if label.flag is None and label.ranks is not None:
            target = gold_rankings if tasks[label.task_id].gold_ranks is not None else rankings
            target[label.task_id][names[label.user_id]] = label.ranks
    report = quality_report(dict(rankings))
    report["gold_accuracy"] = gold_accuracy({t: tasks[t].gold_ranks for t in gold_rankings}, dict(gold_rankings))
    return report


def below_floor(report: dict, floor: float) -> dict:
    """What falls under the agreement floor (annotation teams commonly trust labels from κ ≈ 0.75):

    - `round`: the round-level figures under it (Krippendorff's α, Fleiss' κ, mean Cohen's κ);
    - `annotators`: {name: [reasons]} for each annotator whose gold accuracy or agreement with the
      majority is under it — the ones an export can leave out.
    NaN figures (too few overlapping labels to compute) are not counted as failures."""
    import math

    def low(x) -> bool:
        return x is not None and not (isinstance(x, float) and math.isnan(x)) and x < floor

    round_ = {k: report[k] for k in ("krippendorff_alpha", "fleiss_kappa", "cohen_kappa_mean") if low(report.get(k))}
    annotators: dict[str, list[str]] = defaultdict(list)
    for name, x in report.get("gold_accuracy", {}).items():
        if low(x):
            annotators[name].append(f"gold accuracy {x:.2f}")
    for name, x in report.get("agreement_with_majority", {}).items():
        if low(x):
            annotators[name].append(f"agreement with the majority {x:.2f}")
    return {"floor": floor, "round": round_, "annotators": dict(sorted(annotators.items()))}
