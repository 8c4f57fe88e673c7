"""The DPO stage's options: one dataclass, filled from `configs/dpo/*.yaml` + command line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import param
from common.data.preferences import PreferenceSource
from common.pipeline import default_model
from common.training import TrainingOptions


@dataclass
class DPOStageConfig(TrainingOptions):
    """DPO (TRL's DPOTrainer) of a chat model on preference pairs; K-way rankings become all
    their ordered pairs. The reference is the starting policy (`model`, an SFT adapter merged):
    with LoRA the same weights with the adapters off; with full fine-tuning a frozen copy of
    them. Shared options (model, LoRA, optimisation, checkpoints, early
    stopping, trackers, DeepSpeed) come from `common.training.TrainingOptions`."""

    output_root: str = param("runs/dpo", help="parent folder of run folders")
    model: str = param(default_model("sft"), help="the policy to start from (an SFT output); also the reference")
    learning_rate: float = param(5e-5, help="peak learning rate")

    # --- data
    data: list[PreferenceSource] = param([], help="preference sources with weights (pairs, rankings, HH)")
    val_fraction: float = param(0.1, help="share of prompts held out for validation (split by prompt)")
    max_train_groups: int | None = param(None, help="cap on training groups after mixing (None = all)")
    max_length: int = param(
        512, help="tokens per prompt+reply; a longer pair's shared prompt loses its oldest tokens, the same for both "
        "replies (counted, not dropped)")
    pair_weighting: Literal["pair", "group"] = param(
        "pair",
        help="pair = every ordered pair counts once (a 4-response ranking weighs 6 pairs); group = pairs drawn with "
        "probability 1/(pairs of their group), so each ranking counts once (the reward model's option). Equal on "
        "pairs-only data such as HH",
    )

    # --- loss
    loss_type: Literal["sigmoid", "ipo", "robust"] = param(
        "sigmoid", help="sigmoid = DPO; ipo = IPO's squared loss (β is its τ); robust = Robust DPO under label noise"
    )
    beta: float = param(0.1, help="how far from the reference the policy may move (higher = closer)")
    label_smoothing: float = param(
        0.0, help="robust: the probability that a preference label is flipped, in [0, 0.5)"
    )

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")
        if not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.label_smoothing and self.loss_type != "robust":
            raise ValueError("label_smoothing applies to loss_type: robust only")
        if self.max_length < 16:
            raise ValueError(f"max_length must be ≥ 16, got {self.max_length}")
