"""How far a quantized copy is from the full-precision model: the mean KL per token, on the copy's own replies.

For each prompt the copy q writes its greedy reply y; both models then read prompt + y (teacher
forced) and at every reply position t we take the exact KL over the whole vocabulary,

    KL_t = Σ_v q(v | x, y_<t) · (log q(v | x, y_<t) − log p(v | x, y_<t)),

averaged over every reply token of every prompt. Exact per position (no sampling estimate), so two
runs on the same prompts give the same figure; 0 exactly when the copy equals the full model.
Which reply is read matters little for a close copy; the copy's own is what a user of it sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from common.data import Message
from common.models.generate import Reply, _left_pad, encode_prompts, sample_batch


def token_kl(logp_q: torch.Tensor, logp_p: torch.Tensor, mask: torch.Tensor) -> tuple[float, int]:
    """Σ over masked positions of KL(q ‖ p), and the number of positions.

    logp_q, logp_p: (B, T, V) log-probabilities; mask: (B, T), 1 where a reply token is predicted."""
    kl = (logp_q.exp() * (logp_q - logp_p)).sum(-1)  # (B, T)
    return float((kl * mask).sum()), int(mask.sum())


@dataclass
class CopyReplies:
    """The copy's greedy replies to the prompts and their mean KL per token to the full model."""

    texts: list[str]
    tokens: int  # reply tokens the KL averages over
    mean_kl: float  # nats per token


@torch.no_grad()
def _logprobs(model, ids: torch.Tensor, mask: torch.Tensor, keep: int) -> torch.Tensor:
    """(b, keep, V) log-softmax of the last `keep` predictions (left-padded rows: replies end last)."""
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    device = next(model.parameters()).device
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=position_ids.to(device),
                   use_cache=False, logits_to_keep=keep + 1).logits[:, :-1]  # (b, keep, V)
    return torch.log_softmax(logits.float(), dim=-1).cpu()


@torch.no_grad()
def greedy_replies(model, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int = 64,
                   batch_size: int = 8) -> list[Reply]:
    """One greedy reply per prompt (token ids from `encode_prompts`), in batches."""
    out: list[Reply] = []
    for start in range(0, len(prompt_ids), batch_size):
        part = prompt_ids[start : start + batch_size]
        out += [group[0] for group in sample_batch(model, tokenizer, part, 1, max_new_tokens, do_sample=False)]
    return out


@torch.no_grad()
def mean_token_kl(copy, full, pad_id: int, prompt_ids: list[list[int]], replies: list[Reply],
                  batch_size: int = 8) -> tuple[float, int]:
    """Mean per-token KL(copy ‖ full) over every reply token (module doc), and the number of tokens."""
    total, count = 0.0, 0
    for start in range(0, len(replies), batch_size):
        part, answers = prompt_ids[start : start + batch_size], replies[start : start + batch_size]
        keep = max(len(r.tokens) for r in answers)
        if keep == 0:
            continue
        ids, mask = _left_pad([p + r.tokens for p, r in zip(part, answers)], pad_id)  # (b, L)
        predicted = torch.zeros(len(part), keep)  # (b, keep): 1 where the position predicts a reply token
        for i, r in enumerate(answers):
            predicted[i, keep - len(r.tokens) :] = 1
        s, n = token_kl(_logprobs(copy, ids, mask, keep), _logprobs(full, ids, mask, keep), predicted)
        total, count = total + s, count + n
    return (total / count if count else 0.0), count


def copy_vs_full(copy, full, tokenizer, chats: list[list[Message]], max_new_tokens: int = 64,
                 batch_size: int = 8) -> CopyReplies:
    """The copy's greedy replies to `chats` and the mean per-token KL(copy ‖ full) on them (module doc)."""
    prompts = encode_prompts(tokenizer, chats)
    replies = greedy_replies(copy, tokenizer, prompts, max_new_tokens, batch_size)
    kl, tokens = mean_token_kl(copy, full, tokenizer.pad_token_id, prompts, replies, batch_size)
    return CopyReplies([r.text for r in replies], tokens, kl)
