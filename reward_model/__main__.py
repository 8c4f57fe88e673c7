"""python -m reward_model --config configs/reward_model/default.yaml [--key value ...]"""

from __future__ import annotations

import sys

from transformers import TrainingArguments, set_seed

from common import distributed, training
from common.cli import run_stage
from common.config import parse_args
from common.plan import preflight
from common.reward import REWARD_CONFIG
from common.runs import check_run_dir, open_run_dir, run_dir_for
from common.tracking import finish_trackers
from reward_model import data as rm_data
from reward_model.config import RMStageConfig
from reward_model.metrics import format_metrics
from reward_model.trainer import GroupCollator, PreferenceTrainer, build_model, metrics_fn


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(RMStageConfig, argv, prog="python -m reward_model")
    preflight("reward_model", cfg)  # one log line; refuses a run that cannot fit
    run_dir = run_dir_for(cfg.output_root, cfg.run_name)
    check_run_dir(run_dir, cfg.overwrite)
    set_seed(cfg.seed)  # the new head's initial weights come from this seed
    model, tokenizer = build_model(cfg)
    data = rm_data.prepare(cfg, tokenizer)  # raises on a bad row, before anything is written
    if distributed.is_main_process():
        print("data hygiene:\n" + data.report.table(), flush=True)
        open_run_dir(run_dir, cfg, data.report)
    distributed.barrier()

    splits = [data.train] + ([data.validation] if data.validation is not None else [])
    domains = sorted({d for split in splits for d in split["domain"]})
    max_group = max(len(r) for split in splits for r in split["ranks"])
    args = TrainingArguments(
        **training.trainer_kwargs(cfg, run_dir, data.validation is not None, training.tracking(cfg, run_dir)),
        remove_unused_columns=False,
    )
    trainer = PreferenceTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        processing_class=tokenizer,
        data_collator=GroupCollator(tokenizer.pad_token_id, max_group, {d: i for i, d in enumerate(domains)}),
        compute_metrics=metrics_fn(domains),
        callbacks=training.callbacks(cfg, run_dir),
        rm_config=cfg,
    )
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


if __name__ == "__main__":
    sys.exit(run_stage(main))
