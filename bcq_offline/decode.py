"""Batch-constrained decoding: at each step only tokens with G(a|s) / max G ≥ τ are allowed
(an additive −inf mask), then greedy on Q or sampling from softmax(Q / T) over them.
`policy="behaviour"` decodes with G itself (greedy or sampled) for comparison.

The decoding distribution at temperature T, π_T = softmax(Q / T) over the allowed tokens, is the
policy whose log-probability each reply records (`Decoded.logprob`) — whether it was decoded
greedily or sampled: it is what the evaluation stage's KL compares with a reference model.

`constrained_generate(...)` is the function other code calls; `python -m bcq_offline.generate`
wraps it for the command line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from bcq_offline.constraint import allowed_actions, constrain
from bcq_offline.model import BCQModel
from common.data import Message


@dataclass
class Decoded:
    response: str
    tokens: list[int]
    q_first: float  # Q(s_0, a_0) of the first chosen token (BCQ's own estimate of the return)
    allowed: list[int] = field(default_factory=list)  # allowed tokens per step
    kl_to_g: float = 0.0  # Σ_t KL(π(·|s_t) ‖ G(·|s_t)) over the response
    # Σ_t log π_T(a_t | s_t), π_T = softmax(scores / temperature) over the allowed tokens (scores:
    # Q, or G's log-probabilities for policy="behaviour") — recorded for greedy decoding too
    logprob: float = 0.0
    ended: bool = False  # the response ended with EOS (within max_new_tokens)


@torch.no_grad()
def constrained_generate(
    model: BCQModel,
    tokenizer,
    prompts: list[list[Message]],
    tau: float,
    max_new_tokens: int = 64,
    greedy: bool = True,
    temperature: float = 1.0,
    policy: str = "bcq",
    generator: torch.Generator | None = None,
) -> list[Decoded]:
    if policy not in ("bcq", "behaviour"):
        raise ValueError(f"policy must be 'bcq' or 'behaviour', got {policy!r}")
    model.eval()
    device = next(model.parameters()).device
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in prompts]
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    n = ids.shape[0]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    g_cache = DynamicCache()
    q_cache = DynamicCache() if model.separate else None
    step_ids, step_pos = ids, positions
    out = [Decoded("", [], 0.0) for _ in range(n)]
    done = torch.zeros(n, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        g_hidden = model.trunk(step_ids, mask, step_pos, adapters=False, past_key_values=g_cache)[:, -1]
        g_logp = model.behaviour_logprobs(g_hidden)  # (n, V)
        if policy == "behaviour":
            scores, allowed = g_logp, torch.ones_like(g_logp, dtype=torch.bool)
        else:
            q_hidden = (model.trunk(step_ids, mask, step_pos, adapters=True, past_key_values=q_cache)[:, -1]
                        if model.separate else g_hidden)
            q = model(hidden=q_hidden[:, None])[:, 0]  # (n, V)
            allowed = allowed_actions(g_logp, tau)
            scores = constrain(q, allowed)
        pi = torch.log_softmax(scores / temperature, dim=-1)  # (n, V) log π_T: 0 probability off the allowed set
        if greedy:
            action = scores.argmax(-1)
            kl = -g_logp.gather(-1, action[:, None]).squeeze(-1)  # the greedy policy is deterministic: −log G(a)
        else:
            action = torch.multinomial(pi.exp(), 1, generator=generator).squeeze(-1)
            p = pi.exp()
            kl = (p * (pi - g_logp)).nan_to_num().sum(-1)  # tokens with π = 0 add nothing
        # greedy or sampled, the same quantity: the evaluation's KL (docs/evaluation.md)
        logp_pi = pi.gather(-1, action[:, None]).squeeze(-1)
        for i in range(n):
            if done[i]:
                continue
            out[i].tokens.append(int(action[i]))
            out[i].allowed.append(int(allowed[i].sum()))
            out[i].kl_to_g += float(kl[i])
            out[i].logprob += float(logp_pi[i])
            out[i].ended = int(action[i]) == tokenizer.eos_token_id
            if t == 0 and policy == "bcq":
                out[i].q_first = float(q[i, action[i]])
        done |= action == tokenizer.eos_token_id
        if bool(done.all()):
            break
        # next step: feed the chosen token (finished rows feed padding, masked out)
        step_ids = torch.where(done, torch.full_like(action, tokenizer.pad_token_id), action)[:, None]
        step_pos = step_pos[:, -1:] + 1
        mask = torch.cat([mask, (~done).long()[:, None]], dim=1)
    for d in out:
        d.response = tokenizer.decode(d.tokens, skip_special_tokens=True)
    return out
