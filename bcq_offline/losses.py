"""Discrete BCQ over tokens: double-Q targets under the batch constraint (`bcq_offline.constraint`) and the TD loss — pure
functions on tensors (tested on hand-worked values in tests/test_bcq_losses.py).

A response of T tokens gives T transitions: state s_t = prompt + response[:t], action
a_t = response[t], reward r_t = 0 except r_{T−1} = the response's reward, and s_T terminal.
Shapes: B responses, T response positions, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bcq_offline.constraint import constrain


def double_q_targets(
    q_online_next: torch.Tensor,  # (B, T, V) Q_online(s_{t+1}, ·)
    q_target_next: torch.Tensor,  # (B, T, V) Q_target(s_{t+1}, ·)
    allowed_next: torch.Tensor,  # (B, T, V) batch constraint at s_{t+1}
    rewards: torch.Tensor,  # (B, T) r_t
    terminal: torch.Tensor,  # (B, T) 1 where s_{t+1} is terminal (the last response token)
    gamma: float,
    n_step: int = 1,
) -> torch.Tensor:  # (B, T)
    """y_t = r_t + γ (1 − terminal_t) Q_target(s_{t+1}, a*), a* = argmax over allowed a of Q_online(s_{t+1}, a).

    The online network picks the action, the target network evaluates it (double Q-learning).
    With `n_step` = n > 1 the target looks n tokens ahead along the logged response:
    y_t = Σ_{k<n} γ^k r_{t+k} + γ^n Q_target(s_{t+n}, a*_{t+n}), the rewards summed up to the
    response's end and no bootstrap once the end lies inside the window. A reward at the end of
    a T-token response then reaches its first token after ⌈T/n⌉ target refreshes instead of T.
    """
    if n_step < 1:
        raise ValueError(f"n_step must be ≥ 1, got {n_step}")
    best = constrain(q_online_next, allowed_next).argmax(dim=-1, keepdim=True)  # (B, T, 1)
    next_value = q_target_next.gather(-1, best).squeeze(-1)  # (B, T) Q_target(s_{t+1}, a*)

    def ahead(x: torch.Tensor, k: int) -> torch.Tensor:  # (B, T): x[:, t + k], 0 past the end
        return F.pad(x[:, k:], (0, min(k, x.shape[1])))

    y = torch.zeros_like(rewards, dtype=torch.float)
    ended = torch.zeros_like(y)  # 1 once the window [t, t + k) holds the response's last token
    for k in range(n_step):
        y = y + gamma**k * (1.0 - ended) * ahead(rewards.float(), k)
        ended = torch.maximum(ended, ahead(terminal.float(), k))
    return y + gamma**n_step * (1.0 - ended) * ahead(next_value, n_step - 1)


def token_rewards(rewards: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence rewards (B,) → per-token rewards (B, T) on each response's last token, and the
    terminal flags (B, T) on that same token. `mask` (B, T) marks real response tokens."""
    last = mask.long().sum(dim=1) - 1  # (B,) index of the last real token
    rows = torch.arange(mask.shape[0], device=mask.device)
    r = torch.zeros_like(mask, dtype=torch.float)
    terminal = torch.zeros_like(mask, dtype=torch.float)
    r[rows, last] = rewards.float()
    terminal[rows, last] = 1.0
    return r, terminal


def td_loss(q_taken: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, delta: float = 1.0) -> torch.Tensor:
    """Huber loss between Q(s_t, a_t) (B, T) and fixed targets (B, T), averaged over real tokens."""
    per_token = F.huber_loss(q_taken, targets.detach(), reduction="none", delta=delta)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


@torch.no_grad()
def polyak_update(
    target: torch.nn.Module | list[torch.Tensor], online: torch.nn.Module | list[torch.Tensor], rate: float
) -> None:
    """θ_target ← (1 − rate) θ_target + rate θ_online, in place."""
    if not 0 < rate <= 1:
        raise ValueError(f"polyak rate must lie in (0, 1], got {rate}")
    t_params = list(target.parameters()) if isinstance(target, torch.nn.Module) else target
    o_params = list(online.parameters()) if isinstance(online, torch.nn.Module) else online
    for t, o in zip(t_params, o_params, strict=True):
        t.lerp_(o.detach().to(t.dtype), rate)  # one pass: t + rate (o − t)
