"""Does the export compute what the run's model computed? Per-token log-probabilities of the same
token sequences under two models, compared.

The sequences are a few prompts in the chat template, each followed by the reference
model's own greedy reply (so likely tokens are scored, not only the prompt). The figures:
largest and mean |Δ log p| over every scored token, and the mean KL between the two next-token
distributions (the quality figure of a lossy format).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

# Largest |Δ log p| per token allowed by default, by the dtype of the exported weights. The export
# is run in fp32 arithmetic for the check, so these bound the rounding of the weights alone (fp32:
# only the merge's own rounding). Measured on the default model with a LoRA adapter, 235 tokens
# (docs/export.md): fp32 2e-5, fp16 0.019, bf16 0.14; the bounds leave room for longer replies.
# `adapter_effect` in export.json says whether the adapters move log p more than this at all.
TOLERANCE = {"fp32": 1e-4, "fp16": 0.1, "bf16": 0.5}


@dataclass
class Reference:
    """What every export kind is compared with: the verification prompts and token sequences (each
    prompt in the chat template + the unmerged chain's greedy reply), the merged export's fp32
    logits on them, its tokenizer, and its own greedy reply to the first prompt."""

    prompts: list[str]
    sequences: list[torch.Tensor]  # each (T,)
    logits: list[torch.Tensor]  # each (T, V) fp32
    tokenizer: object
    new_tokens: int
    reply: torch.Tensor  # (T0,) the first prompt and the export's greedy reply


def reference(model, tokenizer, prompts: list[str], seqs: list[torch.Tensor], new_tokens: int) -> Reference:
    reply = sequences(model, tokenizer, prompts[:1], new_tokens)[0]
    return Reference(prompts, seqs, logits_of(model, seqs), tokenizer, new_tokens, reply)


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log p(ids[t+1] | ids[≤t]) for t = 0 … T-2.

    logits: (T, V) one sequence's logits; ids: (T,) its tokens → (T-1,) fp32 log-probabilities."""
    logp = torch.log_softmax(logits[:-1].float(), dim=-1)  # (T-1, V)
    return logp.gather(-1, ids[1:, None]).squeeze(-1)  # (T-1,)


def kl_rows(logits_p: torch.Tensor, logits_q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) of each row's next-token distribution: (T, V), (T, V) → (T,) nats."""
    logp = torch.log_softmax(logits_p.float(), dim=-1)
    logq = torch.log_softmax(logits_q.float(), dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1)


def compare(reference: list[torch.Tensor], other: list[torch.Tensor]) -> dict:
    """Per-sequence log-prob vectors of two models → {"tokens", "max_abs", "mean_abs"} of |Δ log p|."""
    diff = torch.cat([(a - b).abs() for a, b in zip(reference, other, strict=True)])
    return {"tokens": int(diff.numel()), "max_abs": float(diff.max()), "mean_abs": float(diff.mean())}


def read_prompts(path: str, count: int) -> list[str]:
    """The first `count` prompts of a {prompt} JSONL file (one line per row)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(str(json.loads(line)["prompt"]))
            except (json.JSONDecodeError, KeyError, TypeError):
                from export.chain import ExportError

                raise ExportError(f"{path}:{lineno}: expected a JSON row with a 'prompt'") from None
            if len(rows) == count:
                break
    return rows


@torch.no_grad()
def sequences(model, tokenizer, prompts: list[str], new_tokens: int) -> list[torch.Tensor]:
    """Each prompt in the chat template followed by `model`'s greedy reply: a list of (T,) token ids."""
    device = next(model.parameters()).device
    out = []
    for prompt in prompts:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"].to(device)
        if new_tokens:
            ids = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
        out.append(ids[0].cpu())
    return out


@torch.no_grad()
def logits_of(model, seqs: list[torch.Tensor]) -> list[torch.Tensor]:
    """(T, V) fp32 logits of each sequence, computed in the model's parameters' dtype."""
    device = next(model.parameters()).device
    return [model(seq[None].to(device)).logits[0].float().cpu() for seq in seqs]


def logprob_figures(ref_logits: list[torch.Tensor], logits: list[torch.Tensor], seqs: list[torch.Tensor]) -> dict:
    """|Δ log p| of the sequences' own tokens and the mean next-token KL(reference ‖ other)."""
    figures = compare([token_logprobs(lg, s) for lg, s in zip(ref_logits, seqs)],
                      [token_logprobs(lg, s) for lg, s in zip(logits, seqs)])
    figures["mean_kl"] = float(torch.cat([kl_rows(a, b) for a, b in zip(ref_logits, logits)]).mean())
    return figures


def tolerance_for(dtype: str, override: float | None) -> float:
    return TOLERANCE[dtype] if override is None else override
