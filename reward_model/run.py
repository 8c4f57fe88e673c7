"""The reward-model stage in order: backbone + head and preference groups (every check before
anything is written) → run folder → training with resume → the final model with the statistics
its consumers normalise by (`reward_config.json`) → the held-out figures."""

from __future__ import annotations

from pathlib import Path

from common import distributed, training
from common.rewards.scorer import REWARD_CONFIG
from common.tracking import finish_trackers
from reward_model import data as rm_data
from reward_model.config import RMStageConfig
from reward_model.metrics import format_metrics
from reward_model.train import build_model, build_trainer


def run(cfg: RMStageConfig, run_dir: Path) -> Path:
    model, tokenizer = build_model(cfg)  # the new head's initial weights come from the seed
    data = rm_data.prepare(cfg, tokenizer)  # raises on a bad row, before anything is written
    training.open_run(cfg, run_dir, data.report)
    trainer = build_trainer(cfg, run_dir, data, model, tokenizer)
    summary = training.train_with_resume(cfg, run_dir, trainer)
    if data.validation is None:  # reward statistics still need scored responses
        summary.update(trainer.evaluate(data.train.select(range(min(256, len(data.train)))), metric_key_prefix="train_sample"))
    prefix = "eval" if data.validation is not None else "train_sample"
    reward_config = {
        "max_length": cfg.max_length,
        "loss": cfg.loss,
        "reward_mean": summary[f"{prefix}_reward_mean"],
        "reward_std": summary[f"{prefix}_reward_std"],
    }
    final = training.save_final(cfg, run_dir, trainer, summary, extra_files={REWARD_CONFIG: reward_config})
    finish_trackers()
    if distributed.is_main_process():
        figures = {k.removeprefix(f"{prefix}_"): v for k, v in summary.items() if k.startswith(prefix)}
        print(f"held-out figures ({'validation' if prefix == 'eval' else 'training sample'}):\n" + format_metrics(figures))
        print(f"reward model done: {final}; metrics in {run_dir / 'metrics.jsonl'}")
    return final
