"""Frozen-prefix caching: when only a decoder's top layers train (LoRA on the top layers, a critic
with its lower layers frozen), the lower layers' output never changes during a PPO step. It is
computed once per rollout batch and every later pass — policy and reference scoring, each PPO
epoch's forward and backward — runs the top layers only, on that cached hidden state.

Exact: the same layers run on the same inputs (no dropout in the frozen part: it runs in eval
mode). Works with any Hugging Face decoder whose model keeps its blocks in `.layers` and accepts
`inputs_embeds` (Llama, Qwen2/3, Mistral, …): the layer list is swapped for the duration of a
call, so the model's own mask and rotary-position code run unchanged.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def decoder_of(model: nn.Module) -> nn.Module:
    """The module holding `.layers` (a causal LM's `.model`, a PEFT model's base, a bare backbone)."""
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    for candidate in (model, getattr(model, "model", None)):
        if candidate is not None and isinstance(getattr(candidate, "layers", None), nn.ModuleList):
            return candidate
    raise TypeError(f"{type(model).__name__}: no decoder with a `.layers` list")


@contextlib.contextmanager
def layers_only(decoder: nn.Module, part: slice, final_norm: bool = True):
    """Run `decoder` with only `layers[part]` (and without its final norm if `final_norm` is False)."""
    saved_layers, saved_norm = decoder.layers, decoder.norm
    decoder.layers = nn.ModuleList(list(saved_layers)[part])
    if not final_norm:
        decoder.norm = nn.Identity()
    try:
        yield
    finally:
        decoder.layers, decoder.norm = saved_layers, saved_norm


def first_trainable_layer(decoder: nn.Module) -> int:
    """Index of the lowest layer with a trainable parameter; 0 when the embeddings train too."""
    if any(p.requires_grad for p in decoder.embed_tokens.parameters()):
        return 0
    for i, layer in enumerate(decoder.layers):
        if any(p.requires_grad for p in layer.parameters()):
            return i
    return len(decoder.layers)


@torch.no_grad()
def prefix_hidden(decoder: nn.Module, k: int, input_ids, attention_mask, position_ids) -> torch.Tensor:
    """(B, L, H): the hidden state after layers[:k], before the final norm."""
    was_training = decoder.training
    decoder.eval()
    try:
        with layers_only(decoder, slice(0, k), final_norm=False):
            out = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    finally:
        decoder.train(was_training)
    return out.last_hidden_state
