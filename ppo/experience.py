"""One PPO rollout batch and everything computed on it, each tensor with its meaning and shape.

Index convention: a batch holds left-padded prompts (P tokens) followed by responses (T tokens),
so sequence position P + t is response token t.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Experience:
    """One rollout batch; every tensor carries its meaning and shape."""

    sequences: torch.Tensor  # (B, P+T) prompt (left-padded) + response token ids
    attention_mask: torch.Tensor  # (B, P+T) 1 on real tokens
    response_mask: torch.Tensor  # (B, T) 1 on response tokens up to and including EOS
    prompt_len: int  # P
    ended: torch.Tensor  # (B,) bool: the response produced EOS
    logprobs: torch.Tensor | None = None  # (B, T) log π_old(a_t | s_t)
    rollout_logprobs: torch.Tensor | None = None  # (B, T) log π_rollout(a_t | s_t): the sampler's, when it is another copy
    ref_logprobs: torch.Tensor | None = None  # (B, T) log π_ref(a_t | s_t)
    values: torch.Tensor | None = None  # (B, T) V_old(s_t); None without a critic
    scores: torch.Tensor | None = None  # (B,) sequence reward (normalized, clipped, penalties applied)
    kl: torch.Tensor | None = None  # (B, T) per-token KL estimate
    advantages: torch.Tensor | None = None  # (B, T)
    returns: torch.Tensor | None = None  # (B, T) GAE's value targets; None without a critic
    policy_prefix: torch.Tensor | None = None  # (B, P+T, H) policy's frozen lower layers' output (prefix cache)
    critic_prefix: torch.Tensor | None = None  # (B, P+T, H) the critic's

    @property
    def responses(self) -> torch.Tensor:  # (B, T)
        return self.sequences[:, self.prompt_len :]

    def select(self, rows: torch.Tensor) -> Experience:
        """The same batch restricted to `rows` (indices): every per-reply tensor indexed on its first dim."""
        def pick(x):
            return x[rows] if isinstance(x, torch.Tensor) else x

        return Experience(**{f.name: pick(getattr(self, f.name)) for f in fields(self)})
