"""Reward-model training: the backbone with a scalar head, a collator that flattens
preference groups into one batch of sequences, and a `Trainer` whose loss sees whole groups.

TRL's `RewardTrainer` takes pairs only and drops (rather than truncates) long ones; groups of
K responses and left-truncation need this small `transformers.Trainer` subclass instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, Trainer

from common import training
from common.rewards.scorer import pad_batch
from reward_model.config import RMStageConfig
from reward_model.losses import bradley_terry_loss, plackett_luce_loss, rank_gap_margins, score_margins
from reward_model.metrics import preference_metrics


def warm_start(spec: str) -> bool:
    """`model` names a trained reward model (its folder has reward_config.json): training continues
    from it, head included (the closed loop's next round)."""
    from pathlib import Path

    from common.models import resolve_model
    from common.rewards.scorer import REWARD_CONFIG

    try:
        return (Path(resolve_model(spec)) / REWARD_CONFIG).is_file()
    except Exception:  # noqa: BLE001 — not a local folder: a backbone spec
        return False


def build_model(cfg: RMStageConfig):
    """Backbone + 1-output head; LoRA-wrapped or with its lowest layers frozen, per cfg. From a
    reward-model folder, its trained head is kept (warm start)."""
    model, tokenizer = training.load_model(cfg, model_class=AutoModelForSequenceClassification, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    head = getattr(model, "score", None) or model.classifier
    if cfg.head_init == "zero" and not warm_start(cfg.model):
        torch.nn.init.zeros_(head.weight)
    if cfg.finetune != "full":  # lora, qlora
        from peft import get_peft_model

        model = get_peft_model(model, training.lora_config(cfg, "SEQ_CLS", modules_to_save=["score"]))
    elif cfg.freeze_layers > 0:
        backbone = model.base_model
        backbone.embed_tokens.requires_grad_(False)
        for layer in backbone.layers[: cfg.freeze_layers]:
            layer.requires_grad_(False)
    return model, tokenizer


@dataclass
class GroupCollator:
    """Rows of K_g sequences each → one flat batch of N = Σ K_g sequences plus group tensors."""

    pad_id: int
    max_group: int  # K: groups are padded to this many slots so eval outputs stack
    domain_ids: dict[str, int]

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        sequences = [ids for row in rows for ids in row["input_ids"]]
        input_ids, attention_mask = pad_batch(sequences, self.pad_id)  # (N, L)
        n_groups = len(rows)
        ranks = torch.zeros(n_groups, self.max_group, dtype=torch.long)  # 0 = empty slot
        scores = torch.zeros(n_groups, self.max_group)
        slot = torch.full((n_groups, self.max_group), -1, dtype=torch.long)  # row of each slot in the flat batch
        start = 0
        for g, row in enumerate(rows):
            k = len(row["ranks"])
            ranks[g, :k] = torch.tensor(row["ranks"])
            scores[g, :k] = torch.tensor(row["scores"])
            slot[g, :k] = torch.arange(start, start + k)
            start += k
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "ranks": ranks,
            "scores": scores,
            "slot": slot,
            "margin": torch.tensor([row["margin"] for row in rows], dtype=torch.float),  # (G,)
            "domain": torch.tensor([self.domain_ids[row["domain"]] for row in rows]),  # (G,)
        }


class PreferenceTrainer(Trainer):
    def __init__(self, *args, rm_config: RMStageConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.rm_config = rm_config

    def group_rewards(self, model, inputs) -> torch.Tensor:
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits  # (N, 1)
        flat = logits[:, 0].float()  # (N,)
        slot = inputs["slot"]  # (G, K)
        return flat[slot.clamp(min=0)].masked_fill(slot < 0, 0.0)  # (G, K)

    def group_loss(self, rewards: torch.Tensor, inputs) -> torch.Tensor:
        cfg, ranks = self.rm_config, inputs["ranks"]
        if cfg.loss == "plackett_luce":
            return plackett_luce_loss(rewards, ranks)
        margins = None
        if cfg.margin == "rank_gap":
            margins = rank_gap_margins(ranks, cfg.margin_scale)
        elif cfg.margin == "score":
            margins = score_margins(inputs["scores"], cfg.margin_scale)
        elif cfg.margin == "column":
            k = ranks.shape[1]
            margins = (cfg.margin_scale * inputs["margin"])[:, None, None].expand(-1, k, k)  # (G, K, K)
        return bradley_terry_loss(rewards, ranks, margins, per_group=cfg.pair_weighting == "group")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rewards = self.group_rewards(model, inputs)
        loss = self.group_loss(rewards, inputs)
        return (loss, {"rewards": rewards}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            rewards = self.group_rewards(model, inputs)
            loss = self.group_loss(rewards, inputs)
        # labels (G, K + 1): the ranks, then the domain id — what the metrics need
        labels = torch.cat([inputs["ranks"].float(), inputs["domain"][:, None].float()], dim=1)
        return loss.detach(), rewards.detach(), labels


def metrics_fn(domain_names: list[str]):
    def compute(eval_pred) -> dict[str, float]:
        rewards, labels = np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids)
        ranks, domains = labels[:, :-1].astype(int), [domain_names[int(d)] for d in labels[:, -1]]
        return preference_metrics(rewards, ranks, domains)

    return compute


def build_trainer(cfg: RMStageConfig, run_dir, data, model, tokenizer) -> PreferenceTrainer:
    """The preference Trainer over `data` (prepared groups), with the shared trainer options."""
    from transformers import TrainingArguments

    from common import training

    splits = [data.train] + ([data.validation] if data.validation is not None else [])
    domains = sorted({d for split in splits for d in split["domain"]})
    max_group = max(len(r) for split in splits for r in split["ranks"])
    parts = training.trainer_parts(cfg, run_dir, data.validation is not None)
    return PreferenceTrainer(
        model=model,
        args=TrainingArguments(**parts.args, remove_unused_columns=False),
        train_dataset=data.train,
        eval_dataset=data.validation,
        processing_class=tokenizer,
        data_collator=GroupCollator(tokenizer.pad_token_id, max_group, {d: i for i, d in enumerate(domains)}),
        compute_metrics=metrics_fn(domains),
        callbacks=parts.callbacks,
        rm_config=cfg,
    )
