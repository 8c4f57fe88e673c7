"""The SFT stage's options: one dataclass, filled from `configs/sft/*.yaml` + command line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import param
from common.models import DEFAULT_MODEL


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
class LoraSettings:
    """LoRA adapter shape (used when finetune = lora)."""

    rank: int = param(16, help="adapter rank r")
    alpha: int = param(32, help="scaling numerator: updates are scaled by alpha / r")
    dropout: float = param(0.05, help="dropout on the adapter input")
    target_modules: list[str] = param(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        help="module names to adapt; ['all-linear'] adapts every linear layer but the head",
    )
    layers: list[int] | None = param(
        None,
        help="decoder layer indices to adapt (None = all); adapting only the top layers stops "
        "backpropagation there, which makes CPU steps much cheaper",
    )


@dataclass
class SFTStageConfig:
    """Supervised fine-tuning on chat data (TRL SFTTrainer), LoRA or full."""

    # --- what to train, where the run goes
    model: str = param(DEFAULT_MODEL, help="model spec: default model, tiny-random, a folder, or a hub id")
    run_name: str = param("default", help="run folder name under output_root")
    output_root: str = param("runs/sft", help="parent folder of run folders")
    overwrite: bool = param(False, help="replace a finished run of the same name")
    finetune: Literal["lora", "full"] = param("lora", help="train a LoRA adapter or all weights")
    lora: LoraSettings = param(LoraSettings(), help="LoRA shape")

    # --- data
    data: list[DataSource] = param([], help="data files with weights")
    hygiene: HygieneConfig = param(HygieneConfig(), help="cleaning and split")
    max_length: int = param(512, help="truncate tokenized chats to this many tokens")
    assistant_only_loss: bool = param(True, help="loss on assistant tokens only (False: every token)")
    packing: bool = param(False, help="pack several chats into each max_length sequence")

    # --- optimisation
    precision: Literal["auto", "bf16", "fp32"] = param("auto", help="auto = bf16 where the device runs it fast")
    learning_rate: float = param(2e-4, help="peak learning rate")
    lr_scheduler: str = param("cosine", help="transformers scheduler name")
    warmup_ratio: float = param(0.03, help="share of steps spent warming up")
    weight_decay: float = param(0.0, help="AdamW weight decay")
    epochs: float = param(1.0, help="passes over the training data (ignored when max_steps > 0)")
    max_steps: int = param(-1, help="stop after this many optimizer steps (-1 = use epochs)")
    batch_size: int = param(8, help="chats per device per micro-batch")
    grad_accum: int = param(1, help="micro-batches per optimizer step")
    max_grad_norm: float = param(1.0, help="gradient clipping norm")
    gradient_checkpointing: bool = param(False, help="recompute activations to save memory")
    seed: int = param(42, help="seed for data order, split, init and dropout")

    # --- logging, checkpoints, stopping
    logging_steps: int = param(5, help="log metrics every N steps")
    eval_steps: int = param(50, help="evaluate on the validation split every N steps")
    save_steps: int = param(50, help="checkpoint every N steps")
    save_total_limit: int = param(2, help="checkpoints kept (oldest deleted)")
    resume: str = param("auto", help="auto = latest checkpoint in the run folder, never, or a checkpoint path")
    early_stopping_patience: int | None = param(None, help="stop after N evals without improvement (None = off)")
    early_stopping_threshold: float = param(0.0, help="minimum eval-loss improvement that counts")
    wandb_project: str = param("rlhfkit", help="W&B project")
    wandb_mode: Literal["offline", "online", "disabled"] | None = param(
        None, help="W&B mode; None = $WANDB_MODE, else offline"
    )

    # --- distributed
    deepspeed: str | None = param(None, help="DeepSpeed JSON config (configs/deepspeed/*.json), None = off")

    def __post_init__(self):
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise ValueError("early_stopping_patience must be ≥ 1 (or null to turn it off)")
            if self.save_steps % self.eval_steps:
                raise ValueError(
                    "early stopping keeps the best checkpoint, so save_steps must be a multiple of eval_steps "
                    f"(got save_steps={self.save_steps}, eval_steps={self.eval_steps})"
                )
            if self.hygiene.val_fraction == 0:
                raise ValueError("early stopping needs a validation split: set hygiene.val_fraction > 0")
        for key in ("batch_size", "grad_accum", "logging_steps", "eval_steps", "save_steps", "max_length"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be ≥ 1, got {getattr(self, key)}")
