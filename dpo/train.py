"""DPO steps: build TRL's DPOTrainer from the shared training options, train with resume, publish."""

from __future__ import annotations

from pathlib import Path

from common import training
from dpo.config import DPOStageConfig
from dpo.data import PreparedPairs


def build_trainer(cfg: DPOStageConfig, run_dir: Path, data: PreparedPairs, model, tokenizer):
    from trl import DPOConfig, DPOTrainer

    parts = training.trainer_parts(cfg, run_dir, data.validation is not None)
    args = DPOConfig(
        **parts.args,
        max_length=cfg.max_length,
        # cut over-long pairs from the left, as the reward model does: the replies, where the
        # pair differs, are kept; TRL's default (keep_start) would drop pairs whose prompt is long
        truncation_mode="keep_end",
        loss_type=[cfg.loss_type],
        beta=cfg.beta,
        label_smoothing=cfg.label_smoothing,
        dataset_num_proc=None,
    )
    return DPOTrainer(
        model=model,
        ref_model=None,  # LoRA: the same weights with the adapters off; full: TRL makes a frozen copy
        args=args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        processing_class=tokenizer,
        peft_config=training.lora_config(cfg, "CAUSAL_LM"),
        callbacks=parts.callbacks,
    )
