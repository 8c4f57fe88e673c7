"""Behaviour cloning: G, the behaviour model, optionally fine-tuned on the logged responses with
the imitation loss (token NLL of each response given its prompt) before BCQ, so that the batch
constraint G(a|s) / max G ≥ τ describes the policy that actually wrote the log rather than the
SFT model. LoRA adapters on the chosen layers are trained, then merged: G stays one plain model.

Runs in every process identically (same seed, same data, no sampling), so all ranks hold the
same G without communication, and a resumed run rebuilds the same G before loading Q.
"""

from __future__ import annotations

import torch
from torch import nn

from bcq_offline.data import LoggedResponse
from common.data import batch_for_step
from common.models.lora import LoraSettings, peft_config


def response_nll(lm: nn.Module, batch) -> torch.Tensor:
    """Mean −log G(a_t | s_t) over the batch's response tokens (`batch`: a `TokenBatch`)."""
    p = batch.prompt_len
    logits = lm(**batch.inputs(), use_cache=False, logits_to_keep=batch.responses.shape[1] + 1).logits[:, :-1]
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, batch.responses.unsqueeze(-1)).squeeze(-1)
    assert logp.shape[1] == batch.sequences.shape[1] - p
    mask = batch.response_mask
    return -(logp * mask).sum() / mask.sum().clamp(min=1)


def clone_behaviour(lm: nn.Module, encode, records: list[LoggedResponse], steps: int, batch_size: int, lr: float,
                    lora: LoraSettings, seed: int) -> tuple[nn.Module, list[float]]:
    """→ (G fine-tuned and merged, the NLL of every step). `encode(records)` → a `TokenBatch`."""
    from peft import get_peft_model

    torch.manual_seed(seed)
    model = get_peft_model(lm, peft_config(lora, "CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for step in range(steps):
        loss = response_nll(model, encode(batch_for_step(records, step, batch_size, seed)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    merged = model.merge_and_unload()
    merged.eval()
    return merged, losses
