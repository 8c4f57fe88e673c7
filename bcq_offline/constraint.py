"""The batch constraint of BCQ over tokens: which tokens the behaviour policy G makes plausible
enough to choose among (training targets and decoding both use it)."""

from __future__ import annotations

import math

import torch


def check_tau(tau: float) -> None:
    if not 0 < tau < 1:
        raise ValueError(f"tau must lie in (0, 1), got {tau}")


def allowed_actions(behaviour_logprobs: torch.Tensor, tau: float) -> torch.Tensor:
    """(…, V) bool: a is allowed where G(a|s) / max_a' G(a'|s) ≥ τ, i.e. log G(a|s) − max log G ≥ log τ.

    Computed in log space (no underflow for tiny probabilities); the most likely token always
    passes (its ratio is 1 ≥ τ), and so do all tokens tied with it.
    """
    check_tau(tau)
    best = behaviour_logprobs.max(dim=-1, keepdim=True).values
    return behaviour_logprobs - best >= math.log(tau)


def constrain(q: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """(…, V): Q where allowed, −inf elsewhere — an additive mask, so a disallowed token can never
    win an argmax whatever the sign of Q (a multiplicative 0/1 mask would let a zeroed token beat
    negative Q values)."""
    return q + torch.zeros_like(q).masked_fill(~allowed, float("-inf"))
