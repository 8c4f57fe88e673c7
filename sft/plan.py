"""Memory plan of the SFT stage (common/planning/formulas.py): one model trained on micro-batches of
`batch_size` chats of up to `max_length` tokens, the LM head's logits over every position."""

from __future__ import annotations

from common.planning.formulas import Plan, Setup, resolve_arch, trained_model, training_phase
from sft.config import SFTStageConfig


def plan(cfg: SFTStageConfig, setup: Setup) -> Plan:
    arch = resolve_arch(cfg.model, "model")
    row, first = trained_model("model", arch, cfg.finetune, cfg.lora, setup)
    p = Plan("sft", setup, [row])
    p.phases["train"] = [training_phase(arch, cfg.batch_size, cfg.max_length, first, setup, cfg.gradient_checkpointing,
                                        cfg.max_length, "micro-batch", entropy=True)]  # TRL logs each token's entropy
    return p
