"""The evaluation stage in order: prompts, policies and judges checked (every bad input fails before
anything is written or sampled) → run folder → sample and judge → samples.jsonl, report.png,
report.html, trackers → (optionally) blind comparisons for people → eval.json, written last."""

from __future__ import annotations

import uuid
from pathlib import Path

from common import distributed
from common.config import to_dict
from common.runs import open_run_dir
from common.tracking import METRICS_FILE, Tracking
from common.tracking.provenance import read_provenance
from evaluation.config import EvalConfig
from evaluation.evaluate import evaluate, prepare
from evaluation.report import EVAL_FILE, flat_figures, plot, table, write_html, write_report, write_samples


def run(cfg: EvalConfig, run_dir: Path) -> Path | None:
    prepared = prepare(cfg)  # every bad input fails here, before anything is written or sampled
    if distributed.is_main_process():
        for stale in (EVAL_FILE, METRICS_FILE, "wandb_id", "mlflow_id"):  # a fresh evaluation: fresh tracker runs
            (run_dir / stale).unlink(missing_ok=True)
        open_run_dir(run_dir, cfg)
    distributed.barrier()
    report, readings = evaluate(cfg, prepared)
    if report is None:  # not rank 0: rank 0 summarises and writes
        return None
    report = {"status": "complete", "run_name": cfg.run_name, "eval_id": uuid.uuid4().hex[:12], **report,
              "seeds": {"seed": cfg.seed, "processes": distributed.world_size()}, "config": to_dict(cfg)}
    replies = readings[""]
    write_samples(run_dir, replies, prepared.prompts)
    for name, extra in readings.items():
        if name:  # samples-<name>.jsonl: each further reading's replies
            write_samples(run_dir, extra, prepared.prompts, f"samples-{name}.jsonl")
    figure = plot(run_dir, report)
    write_html(run_dir, report, replies, prepared.prompts, cfg.html_prompts)
    tracking = Tracking(cfg, run_dir, to_dict(cfg), read_provenance(run_dir))
    tracking.log(flat_figures(report), 0)  # metrics.jsonl (the dashboard's source) and every tracker
    tracking.summary(flat_figures(report))
    if tracking.wandb is not None:
        import wandb

        tracking.wandb.log({"eval/report": wandb.Image(str(figure))}, step=0)
    tracking.finish()
    if cfg.to_annotation:
        from evaluation.human import load_tasks

        report["human_tasks"] = load_tasks(run_dir, report, cfg.to_annotation)
    path = write_report(run_dir, report)
    print(table(report))
    print(f"evaluation done: {path}, {run_dir / 'report.html'}, {figure}")
    return path
