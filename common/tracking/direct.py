"""Tracking for our own loops (PPO, BCQ, evaluation): `Tracking` calls each tracker's own API."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

from common.distributed import is_main_process
from common.tracking.metrics import append_metrics
from common.tracking.setup import (
    _mlflow_key,
    active_trackers,
    mlflow_record,
    mlflow_uri,
    run_id,
    setup_trackers,
    tensorboard_dir,
    tracker_run_name,
    without_config,
)
from common.tracking.trainer import finish_trackers


def _numbers(stats: dict) -> dict[str, float]:
    return {k: float(v) for k, v in stats.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


class Tracking:
    """The trackers of one run of a loop of our own (PPO, BCQ, evaluation): `log(stats, step)`
    appends to metrics.jsonl and logs to each tracker; `finish()` closes them. Rank 0 only —
    elsewhere every call does nothing."""

    def __init__(self, cfg, run_dir: Path, config: dict, provenance: dict | None = None, start_step: int = 0):
        self.run_dir = Path(run_dir)
        self.active = is_main_process()
        self.names = active_trackers(cfg) if self.active else []
        setup_trackers(cfg, run_dir)
        if not self.active:
            return
        provenance = without_config(provenance)
        record = {**config, "provenance": provenance}
        self.wandb = self.trackio = self.mlflow = self.tensorboard = None
        if "wandb" in self.names:
            import wandb

            self.wandb = wandb.init(project=os.environ["WANDB_PROJECT"], name=tracker_run_name(cfg), dir=str(run_dir),
                                    id=os.environ["WANDB_RUN_ID"], resume="allow", config=record)
        if "trackio" in self.names:
            import trackio

            self.trackio = trackio
            trackio.init(project=cfg.project, name=tracker_run_name(cfg), config=record, resume="allow", embed=False)
        if "mlflow" in self.names:
            from mlflow.tracking import MlflowClient

            self.mlflow = MlflowClient(mlflow_uri(cfg))
            self.mlflow_run = run_id(self.run_dir, "mlflow")
            self.mlflow.update_run(self.mlflow_run, status="RUNNING")
            mlflow_record(self.mlflow, self.mlflow_run, config, provenance)
        if "tensorboard" in self.names:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: a resumed run drops what was logged after its checkpoint (steps > start_step)
            self.tensorboard = SummaryWriter(str(tensorboard_dir(run_dir)), purge_step=start_step + 1 if start_step else None)
            self.tensorboard.add_text("config", "```\n" + json.dumps(record, indent=2, ensure_ascii=False,
                                                                       default=str) + "\n```", start_step)

    def log(self, stats: dict, step: int, metrics_file: bool = True) -> None:
        """`stats` at `step` to every tracker, and (unless `metrics_file` is false) to metrics.jsonl."""
        if not self.active:
            return
        if metrics_file:
            append_metrics(self.run_dir, {"step": step, **stats})
        numbers = _numbers(stats)
        if self.wandb is not None:
            self.wandb.log(stats, step=step)
        if self.trackio is not None:
            self.trackio.log(numbers, step=step)
        if self.mlflow is not None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            metrics = [Metric(_mlflow_key(k), v, now, step) for k, v in numbers.items()]
            for i in range(0, len(metrics), 1000):
                self.mlflow.log_batch(self.mlflow_run, metrics=metrics[i : i + 1000])
        if self.tensorboard is not None:
            for k, v in numbers.items():
                self.tensorboard.add_scalar(k, v, step)
            self.tensorboard.flush()

    def summary(self, figures: dict) -> None:
        """Final figures (W&B's run summary; the others keep the last logged value)."""
        if self.active and self.wandb is not None:
            self.wandb.summary.update(_numbers(figures))

    def finish(self) -> None:
        if not self.active:
            return
        if self.trackio is not None:
            self.trackio.finish()
        if self.mlflow is not None:
            self.mlflow.set_terminated(self.mlflow_run)
        if self.tensorboard is not None:
            self.tensorboard.close()
        finish_trackers()
