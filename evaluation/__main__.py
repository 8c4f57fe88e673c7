"""python -m evaluation --config configs/evaluation/default.yaml [--key value ...]"""

from __future__ import annotations

import sys
import uuid

from transformers import set_seed

from common import distributed
from common.cli import run_stage
from common.config import parse_args, to_dict
from common.plan import preflight
from common.provenance import read_provenance
from common.runs import RunExistsError, open_run_dir, run_dir_for
from common.tracking import METRICS_FILE, Tracking
from evaluation.config import EvalConfig
from evaluation.evaluate import evaluate, prepare
from evaluation.report import EVAL_FILE, flat_figures, plot, table, write_html, write_report, write_samples


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(EvalConfig, argv, prog="python -m evaluation")
    distributed.init()
    preflight("evaluation", cfg)  # one log line; refuses a run that cannot fit
    run_dir = run_dir_for(cfg.output_root, cfg.run_name)
    if (run_dir / EVAL_FILE).exists() and not cfg.overwrite:
        raise RunExistsError(f"{run_dir} already holds a finished evaluation; pick another run_name or pass --overwrite true")
    set_seed(cfg.seed)
    plan = prepare(cfg)  # every bad input fails here, before anything is written or sampled
    if distributed.is_main_process():
        for stale in (EVAL_FILE, METRICS_FILE, "wandb_id", "mlflow_id"):  # a fresh evaluation: fresh tracker runs
            (run_dir / stale).unlink(missing_ok=True)
        open_run_dir(run_dir, cfg)
    distributed.barrier()
    report, replies = evaluate(cfg, plan)
    if report is None:
        return
    report = {"status": "complete", "run_name": cfg.run_name, "eval_id": uuid.uuid4().hex[:12], **report,
              "seeds": {"seed": cfg.seed, "processes": distributed.world_size()}, "config": to_dict(cfg)}
    write_samples(run_dir, replies, plan.prompts)
    figure = plot(run_dir, report)
    write_html(run_dir, report, replies, plan.prompts, cfg.html_prompts)
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
    write_report(run_dir, report)
    print(table(report))
    print(f"evaluation done: {run_dir / EVAL_FILE}, {run_dir / 'report.html'}, {figure}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
