"""The models PPO trains: the policy (a language model, LoRA-wrapped or full, with an optional value
head on its trunk) and a separate critic (a transformer backbone with a scalar head at every position)."""

from __future__ import annotations

import torch
from torch import nn

from common.models import load_model_and_tokenizer
from common.models.lora import peft_config
from ppo.config import PPOStageConfig


class Critic(nn.Module):
    """A transformer backbone with a scalar head applied at every position: V(s_t)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None) -> torch.Tensor:  # (B, L)
        hidden = self.backbone(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                               position_ids=position_ids, use_cache=False).last_hidden_state
        return self.head(hidden).squeeze(-1).float()


def build_critic(spec: str, zero_head: bool, freeze_layers: int = 0) -> Critic:
    from pathlib import Path

    from transformers import AutoModelForSequenceClassification

    from common.models import resolve_model
    from common.rewards.scorer import REWARD_CONFIG, load_reward_model

    if (Path(resolve_model(spec)) / REWARD_CONFIG).is_file():  # a reward model: with ODIN's two heads, its quality head
        model = load_reward_model(spec)[0]
    else:
        model, _ = load_model_and_tokenizer(spec, model_class=AutoModelForSequenceClassification, num_labels=1)
    if zero_head:  # a fresh head starts predicting 0 rather than noise
        nn.init.zeros_(model.score.weight)
    backbone = model.base_model
    if freeze_layers > 0:  # backpropagation stops at the first trained layer: cheaper steps
        backbone.embed_tokens.requires_grad_(False)
        for layer in backbone.layers[:freeze_layers]:
            layer.requires_grad_(False)
    return Critic(backbone, model.score)


class PolicyModel(nn.Module):
    """The language model π and, when the critic shares its trunk, a value head on its last
    hidden state. forward → (logits (B, L, V), values (B, L) or None)."""

    def __init__(self, lm: nn.Module, value_head: nn.Module | None = None):
        super().__init__()
        self.lm, self.value_head = lm, value_head

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
                with_values: bool = False, logits_to_keep: int = 0):
        want = with_values and self.value_head is not None
        out = self.lm(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                      position_ids=position_ids, output_hidden_states=want, use_cache=False, logits_to_keep=logits_to_keep)
        values = self.value_head(out.hidden_states[-1]).squeeze(-1).float() if want else None
        return out.logits, values


def wrap_lora(lm: nn.Module, cfg: PPOStageConfig) -> nn.Module:
    from peft import get_peft_model

    return get_peft_model(lm, peft_config(cfg.lora, "CAUSAL_LM"))
