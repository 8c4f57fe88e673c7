"""Run folders: `<output_root>/<run_name>/` holds a stage's checkpoints, logs and final output.

The final output (`model/`) is written to `model.tmp/` and renamed when complete, so a
folder named `model` is always whole; a run that stops early keeps only its checkpoints.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from transformers.trainer_utils import get_last_checkpoint

from common.config import param, save_yaml, to_dict
from common.pipeline import FINAL

CHECKPOINTS = "checkpoints"


class RunExistsError(FileExistsError):
    pass


@dataclass
class RunOptions:
    """What every stage's run shares: where it goes, checkpoints, seed, precision, tracking,
    DeepSpeed. Each stage's config extends this (through `TrainingOptions` for the stages
    trained by a Hugging Face `Trainer`)."""

    run_name: str = param("default", help="run folder name under output_root")
    output_root: str = param("runs/stage", help="parent folder of run folders")
    overwrite: bool = param(False, help="start afresh: delete a run folder of the same name first")
    resume: str = param("auto", help="auto = latest checkpoint in the run folder, never, or a checkpoint path")
    save_steps: int = param(50, help="checkpoint every N steps")
    save_total_limit: int = param(2, help="checkpoints kept (oldest deleted)")
    seed: int = param(42, help="seed for data order, split, init, dropout and sampling")
    precision: Literal["auto", "bf16", "fp32"] = param("auto", help="auto = bf16 where the device runs it fast")
    trackers: list[Literal["wandb", "trackio", "mlflow", "tensorboard"]] = param(
        ["wandb"], help="where curves go besides metrics.jsonl (rank 0): wandb (offline by default), trackio "
        "(local SQLite, `make dashboard`), mlflow ($MLFLOW_TRACKING_URI, else runs/mlflow.db), tensorboard "
        "(<run>/tensorboard/); several at once, [] for none (docs/tracking.md)"
    )
    project: str = param("rlhfkit", help="project in every tracker: W&B project, trackio project, MLflow experiment")
    wandb_mode: Literal["offline", "online", "disabled"] | None = param(
        None, help="W&B mode; None = $WANDB_MODE, else offline; disabled drops wandb from trackers"
    )
    memory_check: bool = param(
        True, help="plan the run's memory at start (python -m tools.plan) and refuse when it exceeds what this "
        "process can see by more than 20%; false = plan and log only"
    )
    deepspeed: str | None = param(None, help="DeepSpeed JSON config (configs/deepspeed/*.json), None = off")


def run_dir_for(output_root: str, run_name: str) -> Path:
    return Path(output_root) / run_name


def open_run_dir(run_dir: Path, cfg, report=None) -> None:
    """Create the run folder with its resolved config, its provenance (git commit, content hashes
    of the data and models it names: common/tracking/provenance.py) and the data report, if any."""
    from common.tracking.provenance import write_provenance

    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, run_dir / "config.yaml")
    write_provenance(to_dict(cfg), run_dir)
    if report is not None:
        report.save(run_dir / "data_report.json")


def check_run_dir(run_dir: Path, overwrite: bool, finished: str = FINAL, what: str = "run") -> None:
    """`overwrite` starts afresh; otherwise a run folder holding `finished` (its final output) is an
    error and an unfinished one is left in place to be resumed."""
    if overwrite:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif (run_dir / finished).exists():
        raise RunExistsError(f"{run_dir} already holds a finished {what}; pick another run_name or pass --overwrite true")


def latest_checkpoint(run_dir: Path) -> str | None:
    ckpts = run_dir / CHECKPOINTS
    return get_last_checkpoint(str(ckpts)) if ckpts.is_dir() else None


def resolve_resume(run_dir: Path, resume: str) -> str | None:
    """`auto`: the newest checkpoint if any; `never`: none; else a checkpoint path."""
    if resume == "never":
        return None
    if resume == "auto":
        return latest_checkpoint(run_dir)
    if not Path(resume).is_dir():
        raise FileNotFoundError(f"resume: no checkpoint folder at {resume}")
    return resume


def publish(tmp: Path, final: Path) -> None:
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
