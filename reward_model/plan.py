"""Memory plan of the reward-model stage (common/planning/formulas.py): a backbone with a scalar head,
each micro-batch `batch_size` groups of 2 replies (chosen, rejected) of up to `max_length` tokens."""

from __future__ import annotations

from common.planning.formulas import Plan, Setup, resolve_arch, trained_model, training_phase
from reward_model.config import RMStageConfig


def plan(cfg: RMStageConfig, setup: Setup) -> Plan:
    arch = resolve_arch(cfg.model, "model")
    row, first = trained_model("reward model", arch, cfg.finetune, cfg.lora, setup, classifier=True,
                               freeze_layers=cfg.freeze_layers if cfg.finetune == "full" else 0)
    p = Plan("reward_model", setup, [row])
    p.phases["train"] = [training_phase(arch, 2 * cfg.batch_size, cfg.max_length, first, setup,
                                        cfg.gradient_checkpointing, 0, "micro-batch (pairs × 2)")]
    p.notes.append("K-way rankings put K replies of a group through together: multiply the activations by K/2")
    return p
