"""LoRA adapters, one settings type for every stage (SFT, reward model, PPO's policy, BCQ's
separate trunk and behaviour cloning) and one place that turns it into a PEFT config.

In a recipe: `lora: {rank: 16, alpha: 32, dropout: 0.05, target_modules: [...], layers: [...]}`;
on the command line `--lora.rank 8`.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.config import param

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraSettings:
    """LoRA adapter shape (used when a stage trains adapters)."""

    rank: int = param(16, help="adapter rank r")
    alpha: int = param(32, help="scaling numerator: updates are scaled by alpha / r")
    dropout: float = param(0.05, help="dropout on the adapter input")
    target_modules: list[str] = param(
        ALL_PROJECTIONS, help="module names to adapt; ['all-linear'] adapts every linear layer but the head"
    )
    layers: list[int] | None = param(
        None,
        help="decoder layer indices to adapt (None = all); adapting only the top layers stops "
        "backpropagation there, which makes CPU steps much cheaper",
    )

    def __post_init__(self):
        if self.rank < 1 or self.alpha < 1:
            raise ValueError(f"lora.rank and lora.alpha must be ≥ 1, got {self.rank} and {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")


def peft_config(lora: LoraSettings, task_type: str | None, modules_to_save: list[str] | None = None):
    """The PEFT `LoraConfig` for these settings."""
    from peft import LoraConfig

    targets = lora.target_modules
    return LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        layers_to_transform=lora.layers,
        modules_to_save=modules_to_save,
        task_type=task_type,
    )
