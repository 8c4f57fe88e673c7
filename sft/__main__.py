"""python -m sft --config configs/sft/default.yaml [--key value ...]"""

from __future__ import annotations

import logging
import sys

from common import distributed, training
from common.cli import run_stage
from common.config import parse_args
from common.plan import preflight
from common.runs import check_run_dir, open_run_dir, run_dir_for
from common.tracking import finish_trackers
from sft import data as sft_data
from sft import train as sft_train
from sft.config import SFTStageConfig

log = logging.getLogger("sft")


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(SFTStageConfig, argv, prog="python -m sft")
    preflight("sft", cfg)  # one log line; refuses a run that cannot fit
    run_dir = run_dir_for(cfg.output_root, cfg.run_name)
    check_run_dir(run_dir, cfg.overwrite)
    from transformers import set_seed

    from common.models import load_model_and_tokenizer

    set_seed(cfg.seed)
    model, tokenizer = load_model_and_tokenizer(cfg.model)
    data = sft_data.prepare(cfg, tokenizer)  # raises on a bad row, before anything is written
    if distributed.is_main_process():
        print("data hygiene:\n" + data.report.table(), flush=True)
        open_run_dir(run_dir, cfg, data.report)
    distributed.barrier()
    trainer = sft_train.build_trainer(cfg, run_dir, data, model, tokenizer)
    summary = training.train_with_resume(cfg, run_dir, trainer)
    final = training.save_final(cfg, run_dir, trainer, summary)
    finish_trackers()
    if distributed.is_main_process():
        for s in sft_train.sample_answers(final, run_dir):
            print(f"sample — {s['prompt']}\n  → {s['answer']}")
        print(f"SFT done: model in {final}; metrics in {run_dir / 'metrics.jsonl'}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
