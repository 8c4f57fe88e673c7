"""The BCQ networks on one causal LM.

G (behaviour): the LM itself — its trunk and LM head, adapters off. Q: a head over the
vocabulary on a trunk's last hidden state h — `full`: Q(s, ·) = W h + b (B, L, V), a row of W
per token; `bilinear`: Q(s, a) = e_a·(M h) + b_a with G's frozen output embeddings e_a and one
trainable H × H matrix M, so what is learned for a token carries over to tokens G embeds
alike — on G's own trunk
(`shared`: frozen, so one trunk pass per batch serves G, Q and the target Q) or the same base
with LoRA adapters of Q's own (`separate`). The target Q network is not a module: it is a copy
of Q's trainable tensors, swapped in for a forward (`swapped_weights`, which also works under
ZeRO-3) and moved by Polyak averaging — a few MB for a LoRA trunk, not a second model.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from common.models.lora import LoraSettings, peft_config
from common.models.prefix import decoder_of


class FullQHead(nn.Linear):
    """Q(s, ·) = W h + b: a weight row per token (V × H parameters)."""

    def forward(self, hidden, embeddings=None, actions=None):  # (B, T, V), or (B, T, K) at `actions`
        if actions is None:
            return super().forward(hidden).float()
        return q_at(self.weight, self.bias, hidden, actions)


class BilinearQHead(nn.Module):
    """Q(s, a) = e_a·(M h) + b_a with G's frozen output embeddings e_a (passed in, not held):
    H × H + V parameters. M starts at `scale` × I, so Q starts as `scale` × G's logits."""

    def __init__(self, hidden: int, vocab: int, scale: float):
        super().__init__()
        self.proj = nn.Linear(hidden, hidden, bias=False)
        self.bias = nn.Parameter(torch.zeros(vocab))
        with torch.no_grad():
            self.proj.weight.copy_(torch.eye(hidden) * scale)

    def forward(self, hidden, embeddings, actions=None):
        projected = self.proj(hidden)  # (B, T, H) M h
        if actions is None:
            return F.linear(projected, embeddings, self.bias).float()
        return q_at(embeddings, self.bias, projected, actions)


class BCQModel(nn.Module):
    def __init__(self, lm: nn.Module, q_head: nn.Module, separate: bool):
        super().__init__()
        self.lm, self.q_head, self.separate = lm, q_head, separate

    def _adapters_off(self):
        return self.lm.disable_adapter() if self.separate else contextlib.nullcontext()

    def trunk(self, input_ids, attention_mask, position_ids, adapters: bool, past_key_values=None) -> torch.Tensor:
        """(B, L, H) last hidden state (final norm applied); adapters=False gives G's trunk."""
        ctx = contextlib.nullcontext() if adapters else self._adapters_off()
        with ctx:
            out = decoder_of(self.lm)(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                      past_key_values=past_key_values, use_cache=past_key_values is not None)
        return out.last_hidden_state

    def behaviour_logprobs(self, hidden: torch.Tensor) -> torch.Tensor:  # (…, V) log G(a | s)
        return torch.log_softmax(self.lm.get_output_embeddings()(hidden).float(), dim=-1)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, hidden=None, start: int = 0,
                actions: torch.Tensor | None = None) -> torch.Tensor:
        """Q(s, ·) (B, L − start, V) at positions start… — from `hidden` (shared trunk) or Q's own trunk.

        With `actions` (B, L − start, K) token ids: Q(s, a) at those K tokens only (B, L − start, K),
        e.g. W[a]·h + b[a] — what a TD step needs (the taken token, the allowed ones) at a fraction of
        the full-vocabulary cost; the gradient reaches only those rows of the head.
        """
        if hidden is None:
            hidden = self.trunk(input_ids, attention_mask, position_ids, adapters=True)
        # G's output embeddings: the bilinear head's e_a (the full head ignores them)
        return self.q_head(hidden[:, start:], self.lm.get_output_embeddings().weight, actions)


def q_at(weight: torch.Tensor, bias: torch.Tensor, hidden: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """(B, T, K): W[a]·h + b[a] for hidden (B, T, H) and actions (B, T, K) — a linear head's outputs at K tokens."""
    w = weight[actions]  # (B, T, K, H)
    return (torch.einsum("btkh,bth->btk", w.float(), hidden.float()) + bias[actions].float())


def build_bcq_model(lm: nn.Module, q_trunk: str, q_init_scale: float, lora: LoraSettings | None = None,
                    q_head: str = "full") -> BCQModel:
    """G's weights frozen; Q = a fresh head (+ LoRA adapters when separate) that trains.
    Either head starts as `q_init_scale` × G's logits: greedy Q first agrees with greedy G."""
    lm.requires_grad_(False)
    lm_head = lm.get_output_embeddings()
    vocab, hidden = lm_head.weight.shape
    if q_head == "bilinear":
        head = BilinearQHead(hidden, vocab, q_init_scale)
    elif q_head == "full":
        head = FullQHead(hidden, vocab, bias=True)
        with torch.no_grad():
            head.weight.copy_(lm_head.weight * q_init_scale)
            head.bias.zero_()
    else:
        raise ValueError(f"q_head must be 'full' or 'bilinear', got {q_head!r}")
    separate = q_trunk == "separate"
    if separate:
        from peft import get_peft_model

        lm = get_peft_model(lm, peft_config(lora or LoraSettings(dropout=0.0), "CAUSAL_LM"))
    return BCQModel(lm, head, separate)


def trainable_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """The target network: detached copies of the trainable tensors, by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@contextlib.contextmanager
def swapped_weights(model: nn.Module, tensors: dict[str, torch.Tensor]):
    """Within the block, forwards of `model` compute with `tensors` (by parameter name) in place of
    those parameters — each module swaps them in just before its own forward and back right after.

    Per-module hooks rather than one swap up front, so that it also works under DeepSpeed ZeRO-3:
    there a parameter holds its whole data only between ZeRO's own pre-forward hook (which
    gathers it) and post-forward hook (which releases it). Our pre-hook runs after ZeRO's
    (appended) and our post-hook before ZeRO's (prepended), so the swap happens inside that
    window, on whole tensors, and ZeRO releases the data it gathered.
    """
    owners: dict[nn.Module, list[tuple[nn.Parameter, torch.Tensor]]] = {}
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if full in tensors:
                owners.setdefault(module, []).append((p, tensors[full]))
    saved: dict[int, list[torch.Tensor]] = {}

    def swap_in(module, _args):
        saved[id(module)] = [p.data for p, _ in owners[module]]
        for p, t in owners[module]:
            if p.data.shape != t.shape:  # e.g. a ZeRO-3 partition that was not gathered: never compute on it
                raise RuntimeError(f"swapped_weights: {tuple(p.data.shape)} parameter data for a {tuple(t.shape)} "
                                   "tensor (the hooks ran outside ZeRO-3's gather window)")
            p.data = t

    def swap_out(module, _args, _out):
        for (p, _), data in zip(owners[module], saved.pop(id(module))):
            p.data = data

    handles = []
    try:
        for module in owners:
            handles.append(module.register_forward_pre_hook(swap_in))
            handles.append(module.register_forward_hook(swap_out, prepend=True))
        yield
    finally:
        for h in handles:
            h.remove()


def target_q(model: BCQModel, target: dict[str, torch.Tensor], **kwargs) -> torch.Tensor:
    """Q_target(s, ·): the model's forward with the target tensors in place of the trainable ones."""
    with torch.no_grad(), swapped_weights(model, target):
        return model(**kwargs)
