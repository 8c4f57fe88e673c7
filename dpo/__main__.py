"""python -m dpo --config configs/dpo/default.yaml [--key value ...]"""

from __future__ import annotations

import logging
import sys

from common import distributed, training
from common.cli import run_stage
from common.config import parse_args
from common.plan import preflight
from common.runs import check_run_dir, open_run_dir, run_dir_for
from common.tracking import finish_trackers
from dpo import data as dpo_data
from dpo import train as dpo_train
from dpo.config import DPOStageConfig

log = logging.getLogger("dpo")


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(DPOStageConfig, argv, prog="python -m dpo")
    preflight("dpo", cfg)  # one log line; refuses a run that cannot fit
    run_dir = run_dir_for(cfg.output_root, cfg.run_name)
    check_run_dir(run_dir, cfg.overwrite)
    from transformers import set_seed

    from common.models import load_model_and_tokenizer

    set_seed(cfg.seed)
    data = dpo_data.prepare(cfg)  # raises on a bad row, before anything is written
    model, tokenizer = load_model_and_tokenizer(cfg.model)
    if distributed.is_main_process():
        print("data hygiene:\n" + data.report.table(), flush=True)
        open_run_dir(run_dir, cfg, data.report)
    distributed.barrier()
    trainer = dpo_train.build_trainer(cfg, run_dir, data, model, tokenizer)
    truncated = dpo_train.count_cut(trainer, cfg.max_length)
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


if __name__ == "__main__":
    sys.exit(run_stage(main))
