"""Generation helpers: a greedy chat reply for checks, K samples for annotation tasks, and batched
sampling + teacher-forced log-probabilities for the evaluation stage (PPO has its own rollout).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from common.data import Message


@torch.no_grad()
def chat(model, tokenizer, messages: list[Message], max_new_tokens: int = 64) -> str:
    """Greedy reply of `model` to a chat, decoded without special tokens."""
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(model.device)
    model.eval()
    out = model.generate(
        **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    # out: (1, prompt_len + new_len)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()


@torch.no_grad()
def sample_replies(model, tokenizer, messages: list[Message], k: int, max_new_tokens: int = 128,
                   temperature: float = 1.0, top_p: float = 0.95) -> list[str]:
    """`k` sampled replies of `model` to one chat (one batched `generate` call)."""
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(model.device)
    model.eval()
    out = model.generate(
        **inputs, max_new_tokens=max_new_tokens, do_sample=True, temperature=temperature, top_p=top_p, top_k=0,
        num_return_sequences=k, pad_token_id=tokenizer.pad_token_id,
    )  # (k, prompt_len + new_len)
    start = inputs["input_ids"].shape[1]
    return [tokenizer.decode(row[start:], skip_special_tokens=True).strip() for row in out]


@dataclass
class Reply:
    """One sampled reply: its text, its token ids, whether it ended with EOS, and log π(reply)."""

    text: str
    tokens: list[int]  # response token ids, up to and including EOS when it ended
    ended: bool  # the reply produced EOS within max_new_tokens
    logprob: float  # Σ_t log π_T(y_t | prompt, y_<t): the temperature-T softmax, untruncated by top-p


def encode_prompts(tokenizer, prompts: list[list[Message]]) -> list[list[int]]:
    """Each chat's token ids with the generation prompt (the assistant turn's opening) appended."""
    return [
        list(tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=True, return_dict=False))
        for p in prompts
    ]


def _left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """→ input_ids (N, L) and attention_mask (N, L), padded on the left (what decoding wants)."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, s in enumerate(sequences):
        if s:
            ids[i, length - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[i, length - len(s) :] = 1
    return ids, mask


class RecordingSampler(LogitsProcessor):
    """Picks every next token itself and records its log-probability; `generate` runs in greedy
    mode, so its argmax takes the pick (the scores come back −inf everywhere else).

    Sampling: softmax(logits / temperature), cut to the top-p nucleus when top_p < 1, then one
    uniform number per row against the cumulative distribution. `torch.multinomial`, which
    `generate`'s own sampling calls, draws an exponential variate for every vocabulary entry
    instead: 0.2 s a step for 120 rows × 49k tokens on a 2-core CPU, a third of the step.
    Greedy (`do_sample=False`): the argmax.

    Recorded, whatever the decoding: log π_T(token) under the temperature-T softmax, untruncated
    (not the nucleus renormalised) — the policy's own distribution, which the evaluation's KL
    compares with the reference's (docs/evaluation.md); decoding only decides which token is taken.
    """

    def __init__(self, do_sample: bool, temperature: float, top_p: float, generator: torch.Generator | None):
        self.do_sample, self.temperature, self.top_p, self.generator = do_sample, temperature, top_p, generator
        self.steps: list[torch.Tensor] = []  # per step: (B,) log π_T of the token picked

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(scores.float() / self.temperature, dim=-1)  # (B, V) log π_T
        if self.do_sample:
            cdf = self._nucleus(logp).exp().cumsum(dim=-1)  # (B, V)
            u = (1 - torch.rand(cdf.shape[0], 1, generator=self.generator, device=cdf.device)) * cdf[:, -1:]
            pick = torch.searchsorted(cdf, u).clamp(max=cdf.shape[1] - 1).squeeze(-1)  # (B,)
        else:
            pick = logp.argmax(dim=-1)
        self.steps.append(logp.gather(-1, pick[:, None]).squeeze(-1))
        return torch.full_like(scores, float("-inf")).scatter(-1, pick[:, None], 0.0)

    def _nucleus(self, logp: torch.Tensor) -> torch.Tensor:
        """(B, V) log-probabilities to draw from: the top-p nucleus of `logp`, renormalised (top_p < 1)."""
        if self.top_p >= 1:
            return logp
        sorted_logp, order = logp.sort(dim=-1, descending=True)
        # keep a token while the mass before it is below top_p (the most likely one always stays)
        outside = sorted_logp.exp().cumsum(-1) - sorted_logp.exp() >= self.top_p
        kept = logp.scatter(-1, order, sorted_logp.masked_fill(outside, float("-inf")))
        return kept - kept.logsumexp(dim=-1, keepdim=True)


@torch.no_grad()
def sample_batch(model, tokenizer, prompt_ids: list[list[int]], n: int, max_new_tokens: int, do_sample: bool = True,
                 temperature: float = 1.0, top_p: float = 1.0, generator: torch.Generator | None = None) -> list[list[Reply]]:
    """`n` replies to each prompt (token ids from `encode_prompts`) in one `generate` call: the
    prompts left-padded into one batch, each row repeated n times, every reply with its log π.
    Greedy when `do_sample` is False (each of the n replies is then the same). Pass a seeded
    `generator` for repeatable replies. Each reply's log π is at `temperature`, untruncated by
    `top_p` and recorded for greedy replies too (`RecordingSampler`)."""
    device = next(model.parameters()).device
    ids, mask = _left_pad(prompt_ids, tokenizer.pad_token_id)
    ids, mask = ids.repeat_interleave(n, dim=0), mask.repeat_interleave(n, dim=0)  # (N·n, L)
    sampler = RecordingSampler(do_sample, temperature, top_p, generator)
    model.eval()
    out = model.generate(
        input_ids=ids.to(device), attention_mask=mask.to(device), max_new_tokens=max_new_tokens, do_sample=False,
        temperature=None, top_p=None, top_k=None, logits_processor=LogitsProcessorList([sampler]),
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, use_cache=True,
    )  # (N·n, L + T'), the n replies of a prompt next to each other
    logps = torch.stack(sampler.steps, dim=1).cpu()  # (N·n, T')
    replies = []
    for row, logp in zip(out[:, ids.shape[1] :].tolist(), logps):
        ended = tokenizer.eos_token_id in row
        tokens = row[: row.index(tokenizer.eos_token_id) + 1] if ended else row
        text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
        replies.append(Reply(text, tokens, ended, float(logp[: len(tokens)].sum())))
    return [replies[i * n : (i + 1) * n] for i in range(len(prompt_ids))]


@torch.no_grad()
def response_logprobs(model, prompt_ids: list[list[int]], responses: list[list[int]], pad_id: int,
                      temperature: float = 1.0, batch_size: int = 16) -> list[float]:
    """Σ_t log π_T(y_t | prompt, y_<t) for each (prompt, response) pair — a teacher-forced pass, the
    logits divided by `temperature`, untruncated (what `sample_batch` records).

    Sequences are left-padded, so every response ends at the last position and the LM head runs
    only on the last max(len(response)) + 1 positions, not on the prompts."""
    device = next(model.parameters()).device
    model.eval()
    out: list[float] = []
    for start in range(0, len(responses), batch_size):
        prompts, replies = prompt_ids[start : start + batch_size], responses[start : start + batch_size]
        keep = max(len(r) for r in replies)
        if keep == 0:
            out += [0.0] * len(replies)
            continue
        ids, mask = _left_pad([p + r for p, r in zip(prompts, replies)], pad_id)  # (b, L)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)  # as `generate` counts them under left padding
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=position_ids.to(device),
                       use_cache=False, logits_to_keep=keep + 1).logits  # (b, keep + 1, V)
        # at most two (b, keep, V) fp32 tensors alive at once (8 bytes an element, the memory plan's
        # figure): the fp32 logits (fp32 output: the output itself) scaled in place, the model's own
        # bf16 output freed before the log-softmax writes its result
        scaled = logits[:, :-1].float().div_(temperature)
        del logits
        logp = torch.log_softmax(scaled, dim=-1)  # (b, keep, V): predicts the last keep
        del scaled
        taken = logp.gather(-1, ids[:, -keep:, None].to(device)).squeeze(-1).cpu()  # (b, keep)
        out += [float(taken[i, keep - len(r) :].sum()) for i, r in enumerate(replies)]
    return out
