"""Experiment tracking: W&B (offline unless configured) plus a plain metrics file per run.

W&B is configured through its environment variables before the trainer starts, so the
transformers `WandbCallback` (which logs from rank 0 only) picks them up. The mode comes
from the recipe's `wandb_mode`, else `$WANDB_MODE`, else `offline`. Runs land under the run
folder: `<run>/wandb/offline-run-*` (`wandb sync` uploads one later).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from transformers import TrainerCallback

from common.distributed import is_main_process

METRICS_FILE = "metrics.jsonl"


def setup_wandb(run_dir: Path, project: str, run_name: str, mode: str | None) -> list[str]:
    """Point W&B at `run_dir`; returns the `report_to` list for the trainer.

    The W&B run id is kept in `<run>/wandb_id` so a resumed run continues the same W&B run.
    """
    mode = mode or os.environ.get("WANDB_MODE") or "offline"
    if mode == "disabled":
        return []
    os.environ["WANDB_MODE"] = mode
    os.environ["WANDB_DIR"] = str(run_dir)
    os.environ.setdefault("WANDB_PROJECT", project)
    os.environ["WANDB_NAME"] = run_name
    if is_main_process():  # the only rank that logs
        os.environ["WANDB_RUN_ID"] = wandb_run_id(run_dir)
        os.environ["WANDB_RESUME"] = "allow"
    os.environ.setdefault("WANDB_SILENT", "true")
    return ["wandb"]


def wandb_run_id(run_dir: Path) -> str:
    """The run folder's W&B id, made once: a resumed run continues the same W&B run."""
    id_file = Path(run_dir) / "wandb_id"
    if not id_file.is_file():
        id_file.write_text(uuid.uuid4().hex[:12])
    return id_file.read_text().strip()


def start_wandb(run_dir: Path, project: str, run_name: str, mode: str | None, config: dict):
    """A W&B run for loops of our own (no HF Trainer); None when disabled or not rank 0."""
    report_to = setup_wandb(run_dir, project, run_name, mode)
    if not report_to or not is_main_process():
        return None
    import wandb

    return wandb.init(project=os.environ["WANDB_PROJECT"], name=run_name, dir=str(run_dir),
                      id=os.environ["WANDB_RUN_ID"], resume="allow", config=config)


def append_metrics(run_dir: Path, record: dict) -> None:
    with (Path(run_dir) / METRICS_FILE).open("a") as f:
        f.write(json.dumps(record) + "\n")


class MetricsFileCallback(TrainerCallback):
    """Appends every logged dict, with step and wall time, to `<run>/metrics.jsonl` (rank 0)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        append_metrics(self.run_dir, {"step": state.global_step, "epoch": state.epoch, "time": time.time(), **logs})


def truncate_metrics(run_dir: str | Path, last_step: int) -> None:
    """On resume from step `last_step`, forget rows logged after it (they will be logged again)."""
    path = Path(run_dir) / METRICS_FILE
    if path.is_file():
        kept = [row for row in read_metrics(run_dir) if row["step"] <= last_step]
        path.write_text("".join(json.dumps(row) + "\n" for row in kept))


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def finish_wandb() -> None:
    """Close the W&B run (if any) so its summary is written now, not at interpreter exit, and
    drop W&B's process-wide settings so a next run in this process gets its own folder."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is None:
        return
    if wandb.run is not None:
        wandb.finish()
    wandb.teardown()
