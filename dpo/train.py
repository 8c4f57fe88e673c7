"""DPO steps: build TRL's DPOTrainer from the shared training options, train with resume, publish."""

from __future__ import annotations

import copy
from pathlib import Path

from common import training
from dpo.config import DPOStageConfig
from dpo.data import PreparedPairs


def frozen_copy(model):
    """The full fine-tune's reference: the starting weights, frozen. Passed to TRL explicitly:
    left to itself TRL reloads `config._name_or_path`, which for a merged SFT adapter names the
    adapter's BASE model, not the SFT model the policy starts from."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def build_trainer(cfg: DPOStageConfig, run_dir: Path, data: PreparedPairs, model, tokenizer):
    """TRL's DPOTrainer on `model` (the loaded starting policy, an SFT adapter already merged)."""
    from trl import DPOConfig

    from dpo.batching import PairDPOTrainer, SharedPromptCollator, group_weights

    parts = training.trainer_parts(cfg, run_dir, data.validation is not None)
    args = DPOConfig(
        **parts.args,
        # over-long pairs are cut by our collator (one prompt for both replies); TRL's own truncation
        # would cut prompt+chosen and prompt+rejected separately
        max_length=None,
        loss_type=[cfg.loss_type],
        beta=cfg.beta,
        label_smoothing=cfg.label_smoothing,
        dataset_num_proc=None,
    )
    return PairDPOTrainer(
        model=model,
        # (Q)LoRA: the same weights with the new adapters off — the merged SFT model; full: a frozen copy of it
        ref_model=None if cfg.finetune != "full" else frozen_copy(model),
        args=args,
        data_collator=SharedPromptCollator(tokenizer.pad_token_id, cfg.max_length, args.pad_to_multiple_of),
        train_dataset=data.train,
        eval_dataset=data.validation,
        processing_class=tokenizer,
        peft_config=training.lora_config(cfg, "CAUSAL_LM"),
        callbacks=parts.callbacks,
        pair_weights=None if data.train_group_sizes is None else group_weights(data.train_group_sizes),
    )


def count_cut(trainer, max_length: int) -> int:
    """Pairs (train + validation) whose shared prompt the batches cut, from TRL's own tokenization."""
    from dpo.batching import is_cut

    datasets = [d for d in (trainer.train_dataset, trainer.eval_dataset) if d is not None]
    return sum(is_cut(row, max_length) for d in datasets for row in d.select_columns(
        ["prompt_ids", "chosen_ids", "rejected_ids"]))
