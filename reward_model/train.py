"""Reward-model training: the backbone with a scalar head, a collator that flattens
preference groups into one batch of sequences, and a `Trainer` whose loss sees whole groups.

TRL's `RewardTrainer` takes pairs only and drops (rather than truncates) long ones; groups of
K responses and left-truncation need this small `transformers.Trainer` subclass instead.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, Trainer

from common import training
from common.rewards.scorer import pad_batch
from reward_model.config import RMStageConfig
from reward_model.losses import bradley_terry_loss, odin_loss, plackett_luce_loss, rank_gap_margins, score_margins
from reward_model.metrics import head_metrics, preference_metrics


def warm_start(spec: str) -> dict | None:
    """`model` names a trained reward model (its folder has reward_config.json): training continues
    from it, head included (the closed loop's next round). Returns its reward_config, else None."""
    import json
    from pathlib import Path

    from common.models import resolve_model
    from common.rewards.scorer import REWARD_CONFIG

    try:
        path = Path(resolve_model(spec)) / REWARD_CONFIG
    except Exception:  # noqa: BLE001 — not a local folder: a backbone spec
        return None
    return json.loads(path.read_text()) if path.is_file() else None


def build_model(cfg: RMStageConfig):
    """Backbone + head (1 output, or ODIN's quality and length outputs); LoRA-wrapped or with its
    lowest layers frozen, per cfg. From a reward-model folder, its trained head is kept (warm start)."""
    from common.config import ConfigError

    previous = warm_start(cfg.model)
    if previous is not None and previous.get("heads", "single") != cfg.heads:
        raise ConfigError(f"model: {cfg.model} is a heads: {previous.get('heads', 'single')} reward model; "
                          f"heads: {cfg.heads} cannot continue from it")
    num_labels = 2 if cfg.heads == "odin" else 1
    model, tokenizer = training.load_model(cfg, model_class=AutoModelForSequenceClassification, num_labels=num_labels)
    model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.head_init == "zero" and previous is None:
        torch.nn.init.zeros_(score_head(model).weight)
    if cfg.finetune != "full":  # lora, qlora
        from peft import get_peft_model

        model = get_peft_model(model, training.lora_config(cfg, "SEQ_CLS", modules_to_save=["score"]))
    elif cfg.freeze_layers > 0:
        backbone = model.base_model
        backbone.embed_tokens.requires_grad_(False)
        for layer in backbone.layers[: cfg.freeze_layers]:
            layer.requires_grad_(False)
    return model, tokenizer


def score_head(model) -> torch.nn.Module:
    """The classifier layer (`score` on causal-LM backbones); under LoRA, PEFT's wrapper, whose
    `weight` is the trained copy."""
    return getattr(model, "score", None) or model.classifier


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
        lengths = torch.zeros(n_groups, self.max_group)  # response tokens, 0 in empty slots
        slot = torch.full((n_groups, self.max_group), -1, dtype=torch.long)  # row of each slot in the flat batch
        start = 0
        for g, row in enumerate(rows):
            k = len(row["ranks"])
            ranks[g, :k] = torch.tensor(row["ranks"])
            scores[g, :k] = torch.tensor(row["scores"])
            lengths[g, :k] = torch.tensor(row["lengths"], dtype=torch.float)
            slot[g, :k] = torch.arange(start, start + k)
            start += k
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "ranks": ranks,
            "scores": scores,
            "lengths": lengths,
            "slot": slot,
            "margin": torch.tensor([row["margin"] for row in rows], dtype=torch.float),  # (G,)
            "domain": torch.tensor([self.domain_ids[row["domain"]] for row in rows]),  # (G,)
        }


class PreferenceTrainer(Trainer):
    def __init__(self, *args, rm_config: RMStageConfig, **kwargs):
        super().__init__(*args, **kwargs)
        self.rm_config = rm_config
        self.odin_parts: dict[str, list[float]] = defaultdict(list)  # ODIN's loss terms since the last log

    def group_rewards(self, model, inputs) -> torch.Tensor:
        """(G, K, H) rewards of every slot, H = the heads (1, or ODIN's quality and length); 0 in empty slots."""
        logits = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits  # (N, H)
        flat = logits.float()  # (N, H)
        slot = inputs["slot"]  # (G, K)
        return flat[slot.clamp(min=0)].masked_fill((slot < 0)[..., None], 0.0)  # (G, K, H)

    def ranking_loss(self, rewards: torch.Tensor, inputs) -> torch.Tensor:
        """The configured ranking loss of (G, K) rewards."""
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

    def group_loss(self, rewards: torch.Tensor, inputs) -> torch.Tensor:
        cfg = self.rm_config
        if cfg.heads == "single":
            return self.ranking_loss(rewards[..., 0], inputs)
        weight = score_head(self.model).weight  # (2, D)
        if weight.dim() != 2:
            raise RuntimeError("heads: odin reads the head's weights in the loss, but DeepSpeed ZeRO-3 partitioned them: "
                               "keep stage3_param_persistence_threshold at 'auto' (or above 2 × hidden size)")
        parts = odin_loss(rewards, inputs["ranks"], inputs["lengths"], weight,
                          lambda summed: self.ranking_loss(summed, inputs), cfg.odin_length_weight, cfg.odin_orthogonal_weight)
        if self.model.training:
            for name in ("ranking", "length", "orthogonal", "quality_corr", "length_corr"):
                self.odin_parts[name].append(getattr(parts, name).item())
        return parts.total

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self.odin_parts:  # a training log: add ODIN's terms, averaged since the last one
            logs.update({f"odin/{name}": float(np.mean(values)) for name, values in self.odin_parts.items()})
            self.odin_parts.clear()
        super().log(logs, start_time)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        rewards = self.group_rewards(model, inputs)
        loss = self.group_loss(rewards, inputs)
        return (loss, {"rewards": rewards}) if return_outputs else loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            rewards = self.group_rewards(model, inputs)  # (G, K, H)
            loss = self.group_loss(rewards, inputs)
        # labels (G, 2K + 1): the ranks, the response lengths, then the domain id — what the metrics need
        labels = torch.cat([inputs["ranks"].float(), inputs["lengths"], inputs["domain"][:, None].float()], dim=1)
        predictions = rewards if self.rm_config.heads == "odin" else rewards[..., 0]  # (G, K, 2) or (G, K)
        return loss.detach(), predictions.detach(), labels


def metrics_fn(domain_names: list[str]):
    def compute(eval_pred) -> dict[str, float]:
        rewards, labels = np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids)
        k = (labels.shape[1] - 1) // 2
        ranks, lengths = labels[:, :k].astype(int), labels[:, k : 2 * k]
        domains = [domain_names[int(d)] for d in labels[:, -1]]
        if rewards.ndim == 3:  # ODIN's two heads
            return head_metrics(rewards, ranks, domains, lengths)
        return preference_metrics(rewards, ranks, domains, lengths)

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
