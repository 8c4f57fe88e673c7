"""Annotation quality for the admin tab: the agreement figures of `common.agreement` over a store's labels."""

from __future__ import annotations

from collections import defaultdict

from common.agreement import gold_accuracy, quality_report


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
