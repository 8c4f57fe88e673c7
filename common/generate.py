"""Small generation helpers for checks and samples (not the PPO rollout engine)."""

from __future__ import annotations

import torch

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
