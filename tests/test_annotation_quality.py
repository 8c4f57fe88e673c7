"""Agreement figures against values worked out by hand."""

from __future__ import annotations

import math

import pytest

from annotation_ui.agreement import (
    cohen,
    decisions,
    gold_accuracy,
    krippendorff_alpha,
    majority_agreement,
    pairwise_items,
    quality_report,
)


def test_decisions_of_a_ranking_with_a_tie():
    assert decisions([2, 1, 2]) == {(0, 1): 1, (0, 2): 2, (1, 2): 0}


def test_perfect_agreement_gives_one_everywhere():
    rankings = {1: {"a": [1, 2, 3], "b": [1, 2, 3]}, 2: {"a": [2, 1, 3], "b": [2, 1, 3]}}
    report = quality_report(rankings)
    assert report["krippendorff_alpha"] == pytest.approx(1.0)
    assert report["fleiss_kappa"] == pytest.approx(1.0)
    assert report["cohen_kappa"] == {"a~b": pytest.approx(1.0)}
    assert report["agreement_with_majority"] == {"a": 1.0, "b": 1.0}


def test_cohen_kappa_by_hand():
    # four K=2 tasks: a says 0,0,1,1 and b says 0,1,1,1 → p_o = 3/4, p_e = ½·¼ + ½·¾ = ½ → κ = ½
    a = [[1, 2], [1, 2], [2, 1], [2, 1]]
    b = [[1, 2], [2, 1], [2, 1], [2, 1]]
    rankings = {t: {"a": a[t], "b": b[t]} for t in range(4)}
    assert cohen(pairwise_items(rankings)) == {"a~b": pytest.approx(0.5)}


def test_fleiss_kappa_by_hand():
    # 3 raters, 2 items, K=2: item 1 all say 0, item 2 says 0, 0, 1
    # P_i = (3·2)/(3·2) = 1 and (2·1 + 1·0)/6 = 1/3 → P̄ = 2/3; p_0 = 5/6, p_1 = 1/6 → P_e = 26/36
    # κ = (2/3 − 26/36) / (1 − 26/36) = (24/36 − 26/36) / (10/36) = −0.2
    rankings = {1: {"a": [1, 2], "b": [1, 2], "c": [1, 2]}, 2: {"a": [1, 2], "b": [1, 2], "c": [2, 1]}}
    assert quality_report(rankings)["fleiss_kappa"] == pytest.approx(-0.2)
    # c disagreed once with a strict majority of its 2 decisions
    assert majority_agreement(pairwise_items(rankings)) == {"a": 1.0, "b": 1.0, "c": 0.5}


def test_gold_accuracy_and_undefined_cases():
    gold = {7: [1, 2, 3]}
    rankings = {7: {"a": [1, 2, 3], "b": [3, 2, 1]}}
    assert gold_accuracy(gold, rankings) == {"a": 1.0, "b": 0.0}
    assert math.isnan(krippendorff_alpha({1: {"a": [1, 2]}}))  # one annotator: nothing to agree on


def test_report_from_a_store_separates_gold_tasks(tmp_path):
    from annotation_ui.quality import store_report
    from annotation_ui.store import Store

    store = Store(str(tmp_path / "q.db"))
    a, b = store.add_user("a", "password123"), store.add_user("b", "password123")
    prompt = [{"role": "user", "content": "q"}]
    store.add_tasks([{"prompt": prompt, "responses": ["x", "y"]},
                     {"prompt": prompt, "responses": ["g1", "g2"], "gold_ranks": [1, 2]}])
    answers = {a: {1: [1, 2], 2: [1, 2]}, b: {1: [1, 2], 2: [2, 1]}}  # task 2 is the gold one
    for uid in (a, b):
        while (h := store.next_task(uid, overlap=2, gold_rate=1.0)) is not None:
            store.submit(uid, h.task_id, answers[uid][h.task_id], f"{uid}-{h.task_id}")
    report = store_report(store)
    assert report["tasks"] == 1 and report["gold_accuracy"] == {"a": 1.0, "b": 0.0}
