"""The DPO stage in order: policy and pairs (every check before anything is written) → run folder →
TRL's DPOTrainer with resume → the final model."""

from __future__ import annotations

import warnings
from pathlib import Path

from common import distributed, training
from common.models import load_model_and_tokenizer
from common.tracking import finish_trackers
from dpo import data as dpo_data
from dpo.config import DPOStageConfig
from dpo.train import build_trainer


def run(cfg: DPOStageConfig, run_dir: Path) -> Path:
    model, tokenizer = load_model_and_tokenizer(cfg.model)
    data = dpo_data.prepare(cfg, tokenizer)  # raises on a bad row, before anything is written
    notes = (f"{data.truncated} pair(s) longer than max_length={cfg.max_length} tokens: cut from the left",) \
        if data.truncated else ()
    training.open_run(cfg, run_dir, data.report, notes)
    with warnings.catch_warnings():  # TRL marks keep_end for removal in its 2.0; we pin 1.16 (docs/design.md)
        warnings.filterwarnings("ignore", message=".*'keep_end' truncation mode is deprecated.*")
        trainer = build_trainer(cfg, run_dir, data, model, tokenizer)
    summary = training.train_with_resume(cfg, run_dir, trainer)
    summary["truncated_pairs"] = data.truncated
    final = training.save_final(cfg, run_dir, trainer, summary)
    finish_trackers()
    if distributed.is_main_process():
        figures = {k: v for k, v in summary.items() if k.startswith("eval_rewards/")}
        print(f"DPO done: model in {final}; metrics in {run_dir / 'metrics.jsonl'}; held-out {figures}")
    return final
