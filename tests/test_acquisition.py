"""Uncertainty and selection (annotation_ui/acquisition.py) on hand-worked numbers."""

import math

import pytest

from annotation_ui.acquisition import (
    Candidate,
    ensemble_disagreement,
    margin_uncertainty,
    pair_probabilities,
    select,
    uncertainty,
)

LN3 = math.log(3)


def test_pair_probabilities_are_bradley_terry():
    # σ(0 − ln 3) = 1 / (1 + 3)
    assert pair_probabilities([0.0, LN3])[0].tolist() == pytest.approx([0.25])
    # three candidates: pairs (0,1), (0,2), (1,2)
    assert pair_probabilities([0.0, 0.0, LN3])[0].tolist() == pytest.approx([0.5, 0.25, 0.25])


def test_margin_is_one_for_a_tie_and_falls_with_the_smallest_gap():
    assert margin_uncertainty([0.0, 0.0, 5.0]) == pytest.approx(1.0)  # two alike: the ranking is a coin toss
    # gap ln 3: σ = 0.75, 1 − |2·0.75 − 1| = 0.5
    assert margin_uncertainty([0.0, LN3]) == pytest.approx(0.5)
    assert margin_uncertainty([0.0, 10.0]) < 1e-3
    # the mean over members is what counts: members (0, ln3) and (0, −ln3) average to a tie
    assert margin_uncertainty([[0.0, LN3], [0.0, -LN3]]) == pytest.approx(1.0)


def test_ensemble_disagreement_is_the_mutual_information_in_bits():
    # members say p = 0.25 and 0.75: H(0.5) − (H(0.25) + H(0.75)) / 2 = 1 − 0.811278
    h = -(0.25 * math.log2(0.25) + 0.75 * math.log2(0.75))
    assert ensemble_disagreement([[0.0, LN3], [LN3, 0.0]]) == pytest.approx(1 - h)
    # members agree that it is a coin toss: no disagreement (margin would call it most uncertain)
    assert ensemble_disagreement([[0.0, 0.0], [1.0, 1.0]]) == pytest.approx(0.0, abs=1e-9)
    # certain and opposed: the full bit
    assert ensemble_disagreement([[0.0, 30.0], [30.0, 0.0]]) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="≥ 2 reward models"):
        ensemble_disagreement([[0.0, 1.0]])


def test_bad_scores_and_strategies_are_clear_errors():
    with pytest.raises(ValueError, match="≥ 2 candidates"):
        margin_uncertainty([1.0])
    with pytest.raises(ValueError, match="strategy must be one of"):
        uncertainty([0.0, 1.0], "entropy")


def cands(*rows):
    return [Candidate(key, domain, scores) for key, domain, scores in rows]


def test_selection_takes_the_most_uncertain_one_task_per_prompt():
    pool = cands(("p1", "medical", [0.0, 0.1]), ("p1", "medical", [0.0, 3.0]), ("p2", "medical", [0.0, 1.0]),
                 ("p3", "medical", [0.0, 5.0]))
    chosen = select(pool, "margin", 2)
    assert [(c.key, c.scores) for c in chosen] == [("p1", [0.0, 0.1]), ("p2", [0.0, 1.0])]
    assert chosen[0].uncertainty > chosen[1].uncertainty


def test_no_domain_takes_the_whole_budget_while_others_have_tasks():
    pool = cands(*[(f"m{i}", "medical", [0.0, 0.01 * i]) for i in range(6)],  # medical: all near-ties
                 ("f1", "finance", [0.0, 2.0]), ("l1", "legal", [0.0, 4.0]))
    chosen = select(pool, "margin", 3)
    assert sorted(c.domain for c in chosen) == ["finance", "legal", "medical"]
    # a domain with fewer tasks than its quota leaves its share to the others
    chosen = select(pool, "margin", 6)
    assert [c.domain for c in chosen].count("medical") == 4


def test_every_domain_gets_its_floor_share_of_the_budget():
    # three domains of three tasks each; medical and finance are all more uncertain than legal
    pool = cands(*[(f"m{i}", "medical", [0.0, 0.01 * i]) for i in range(3)],
                 *[(f"f{i}", "finance", [0.0, 0.1 + 0.01 * i]) for i in range(3)],
                 *[(f"l{i}", "legal", [0.0, 3.0 + i]) for i in range(3)])
    chosen = select(pool, "margin", 4)
    # round-robin: each domain's most uncertain (m0, f0, l0), then the most uncertain second (m1);
    # quotas of ceil(4 / 3) = 2 would have given medical 2, finance 2, legal 0
    assert [c.key for c in chosen] == ["m0", "m1", "f0", "l0"]
    for budget in range(1, 10):
        counts = [[c.domain for c in select(pool, "margin", budget)].count(d) for d in ("medical", "finance", "legal")]
        assert min(counts) >= budget // 3 and sum(counts) == budget, (budget, counts)


def test_random_is_seeded_and_budget_beyond_the_pool_is_an_error():
    pool = cands(*[(f"p{i}", "general", [0.0, float(i)]) for i in range(20)])
    a = [c.key for c in select(pool, "random", 5, seed=3)]
    assert a == [c.key for c in select(pool, "random", 5, seed=3)]
    assert a != [c.key for c in select(pool, "random", 5, seed=4)]
    with pytest.raises(ValueError, match="budget 21 is larger than the candidate pool \\(20 prompts\\)"):
        select(pool, "margin", 21)
    with pytest.raises(ValueError, match="budget must be ≥ 1"):
        select(pool, "margin", 0)


def test_a_reward_model_says_how_sure_it_is_of_a_ranking(tiny_reward_model):
    from common.rewards.scorer import load_reward_scorer, ranking_uncertainty

    scorer = load_reward_scorer(str(tiny_reward_model))
    replies = ["Sure, here is how.", "No.", "Sure, here is how."]
    scores, u = ranking_uncertainty([scorer], "How do I boil an egg?", replies)
    assert scores.shape == (1, 3) and scores[0, 0] == pytest.approx(scores[0, 2].item())
    assert u == pytest.approx(1.0)  # two identical replies: the ranking of that pair is a coin toss
    _, disagreement = ranking_uncertainty([scorer, scorer], "How do I boil an egg?", replies, "ensemble")
    assert disagreement == pytest.approx(0.0, abs=1e-9)  # one model twice agrees with itself
