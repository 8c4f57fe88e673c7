"""Memory plan of the DPO stage (common/planning/formulas.py): the policy trained on micro-batches of
`batch_size` pairs (chosen and rejected: 2 sequences each) with logits over every position, and
the reference — the same weights with the adapters off under LoRA, a frozen copy otherwise —
scoring them without gradients."""

from __future__ import annotations

from common.planning.formulas import Plan, Row, Setup, logits_bytes, policy_and_reference, resolve_arch, training_phase
from dpo.config import DPOStageConfig


def plan(cfg: DPOStageConfig, setup: Setup) -> Plan:
    arch = resolve_arch(cfg.model, "model")
    rows, first = policy_and_reference(arch, cfg.finetune, cfg.lora, setup)
    p = Plan("dpo", setup, rows)
    sequences = 2 * cfg.batch_size
    p.phases["train"] = [
        training_phase(arch, sequences, cfg.max_length, first, setup, cfg.gradient_checkpointing, cfg.max_length,
                       "micro-batch (pairs × 2)"),
        Row("reference logits", activations=logits_bytes(arch, sequences, cfg.max_length, setup, grad=False),
            note="no gradients"),
    ]
    return p
