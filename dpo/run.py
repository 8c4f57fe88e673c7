"""The DPO stage in order: pairs and policy (every check before anything is written) → run folder →
TRL's DPOTrainer with resume (over-long pairs cut once per pair, counted) → the final model."""

from __future__ import annotations

from pathlib import Path

from common import distributed, training
from common.tracking import finish_trackers
from dpo import data as dpo_data
from dpo.config import DPOStageConfig
from dpo.train import build_trainer, count_cut


def run(cfg: DPOStageConfig, run_dir: Path) -> Path:
    data = dpo_data.prepare(cfg)  # raises on a bad row, before anything is written
    model, tokenizer = training.load_model(cfg)
    training.open_run(cfg, run_dir, data.report)
    trainer = build_trainer(cfg, run_dir, data, model, tokenizer)
    truncated = count_cut(trainer, cfg.max_length)
    if truncated and distributed.is_main_process():
        print(f"{truncated} pair(s) longer than max_length={cfg.max_length} tokens: their shared prompt is cut from "
              "the left, the same for both replies", flush=True)
    summary = training.train_with_resume(cfg, run_dir, trainer)
    summary["truncated_pairs"] = truncated
    final = training.save_final(cfg, run_dir, trainer, summary)
    finish_trackers()
    if distributed.is_main_process():
        figures = {k: v for k, v in summary.items() if k.startswith("eval_rewards/")}
        print(f"DPO done: model in {final}; metrics in {run_dir / 'metrics.jsonl'}; held-out {figures}")
    return final
