"""Run folders: `<output_root>/<run_name>/` holds a stage's checkpoints, logs and final output.

The final output (`model/`) is written to `model.tmp/` and renamed when complete, so a
folder named `model` is always whole; a run that stops early keeps only its checkpoints.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from transformers.trainer_utils import get_last_checkpoint

from common.config import save_yaml

FINAL = "model"
CHECKPOINTS = "checkpoints"


class RunExistsError(FileExistsError):
    pass


def run_dir_for(output_root: str, run_name: str) -> Path:
    return Path(output_root) / run_name


def open_run_dir(run_dir: Path, cfg, report=None) -> None:
    """Create the run folder with its resolved config (and the data report, if any)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, run_dir / "config.yaml")
    if report is not None:
        report.save(run_dir / "data_report.json")


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """`overwrite` starts afresh; otherwise a finished run is an error and an unfinished one
    is left in place to be resumed."""
    if overwrite:
        shutil.rmtree(run_dir, ignore_errors=True)
    elif (run_dir / FINAL).exists():
        raise RunExistsError(f"{run_dir} already holds a finished run; pick another run_name or pass --overwrite true")


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
