"""The SFT stage in order: model and data (every check before anything is written) → run folder →
TRL's SFTTrainer with resume → the final model → a few sample answers from it."""

from __future__ import annotations

from pathlib import Path

from common import distributed, training
from common.tracking import finish_trackers
from sft import data as sft_data
from sft.config import SFTStageConfig
from sft.train import build_trainer, sample_answers


def run(cfg: SFTStageConfig, run_dir: Path) -> Path:
    model, tokenizer = training.load_model(cfg)
    data = sft_data.prepare(cfg, tokenizer)  # raises on a bad row, before anything is written
    training.open_run(cfg, run_dir, data.report)
    trainer = build_trainer(cfg, run_dir, data, model, tokenizer)
    summary = training.train_with_resume(cfg, run_dir, trainer)
    final = training.save_final(cfg, run_dir, trainer, summary)
    finish_trackers()
    if distributed.is_main_process():
        for s in sample_answers(final, run_dir):
            print(f"sample — {s['prompt']}\n  → {s['answer']}")
        print(f"SFT done: model in {final}; metrics in {run_dir / 'metrics.jsonl'}")
    return final
