"""Diversity in [0, 1]: across the samples for one prompt, and within one response."""

from __future__ import annotations

from common.data.text import ngrams, words


def distinct_n(responses: list[str], n: int = 2) -> float:
    """Distinct n-grams / all n-grams over a prompt's samples (1 = no n-gram repeats)."""
    grams = [g for r in responses for g in ngrams(words(r), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def non_repetition(response: str, n: int = 3) -> float:
    """Share of a response's n-grams that are not repeats of an earlier one in it."""
    grams = ngrams(words(response), n)
    return len(set(grams)) / len(grams) if grams else 1.0


def diversity_scores(responses: list[str], group_ids: list[int], n: int = 2) -> list[float]:
    """Per response: ½ · distinct-n of its prompt's samples + ½ · its own non-repetition.

    `group_ids[i]` names the prompt response i was sampled for; a prompt with one sample
    gets its within-response score for both halves.
    """
    groups: dict[int, list[str]] = {}
    for r, g in zip(responses, group_ids):
        groups.setdefault(g, []).append(r)
    across = {g: distinct_n(rs, n) if len(rs) > 1 else None for g, rs in groups.items()}
    out = []
    for r, g in zip(responses, group_ids):
        within = non_repetition(r)
        out.append(0.5 * (across[g] if across[g] is not None else within) + 0.5 * within)
    return out
