"""The SFT stage's options: one dataclass, filled from `configs/sft/*.yaml` + command line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import param
from common.training import TrainingOptions


@dataclass
class DataSource:
    """One data file and its share of the training mix."""

    path: str = param(help="JSONL file (.jsonl or .jsonl.gz)")
    format: Literal["auto", "messages", "prompt_completion", "hh"] = param(
        "auto", help="row shape; auto detects messages / prompt+completion / HH 'chosen' per row"
    )
    weight: float = param(
        1.0, help="share of this file's training rows to use: 0.5 = a random half, 2.0 = each row twice"
    )

    def __post_init__(self):
        if self.weight <= 0:
            raise ValueError(f"data source {self.path}: weight must be > 0, got {self.weight}")


@dataclass
class HygieneConfig:
    """Cleaning applied before the train/validation split, each step reported with counts."""

    exact_dedup: bool = param(True, help="drop chats whose normalized text repeats an earlier one")
    near_dedup: bool = param(True, help="drop near-duplicates (MinHash LSH on token 3-grams)")
    near_dup_threshold: float = param(0.85, help="Jaccard similarity at or above which a chat is a near-duplicate")
    min_tokens: int = param(4, help="drop chats shorter than this many tokens (chat template applied)")
    max_tokens: int = param(2048, help="drop chats longer than this many tokens (chat template applied)")
    val_fraction: float = param(0.05, help="share of cleaned chats held out for validation (0 = none)")
    max_train_samples: int | None = param(None, help="cap on training chats after mixing (None = all)")

    def __post_init__(self):
        if not 0 < self.near_dup_threshold <= 1:
            raise ValueError(f"hygiene.near_dup_threshold must be in (0, 1], got {self.near_dup_threshold}")
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"hygiene.val_fraction must be in [0, 1), got {self.val_fraction}")


@dataclass
class SFTStageConfig(TrainingOptions):
    """Supervised fine-tuning on chat data (TRL SFTTrainer), LoRA or full."""

    output_root: str = param("runs/sft", help="parent folder of run folders")

    # --- data
    data: list[DataSource] = param([], help="data files with weights")
    hygiene: HygieneConfig = param(HygieneConfig(), help="cleaning and split")
    max_length: int = param(512, help="truncate tokenized chats to this many tokens")
    assistant_only_loss: bool = param(True, help="loss on assistant tokens only (False: every token)")
    packing: bool = param(False, help="pack several chats into each max_length sequence")

    def __post_init__(self):
        super().__post_init__()
        if self.max_length < 1:
            raise ValueError(f"max_length must be ≥ 1, got {self.max_length}")
        if self.early_stopping_patience is not None and self.hygiene.val_fraction == 0:
            raise ValueError("early stopping needs a validation split: set hygiene.val_fraction > 0")
