"""Efficiency in [0, 1]: 1 up to the domain's token budget, falling linearly to 0 at twice it."""

from __future__ import annotations


def length_score(n_tokens: int, budget: int) -> float:
    if budget <= 0:
        raise ValueError(f"token budget must be > 0, got {budget}")
    if n_tokens <= budget:
        return 1.0
    return max(0.0, 1.0 - (n_tokens - budget) / budget)
