"""Step checkpoints for our own training loops (PPO, BCQ): `<run>/checkpoints/step-N/`.

Every rank calls `write_checkpoint`: the folder is made as `step-N.tmp`, every rank writes its
parts into it (its ZeRO shards, its RNG state), rank 0 writes `state.pt` (the step and whatever
the stage adds), and only then is it renamed to `step-N` — a folder of that name is whole.
Older checkpoints beyond `keep` are deleted. `resume_point` resolves the `resume` option.
"""

from __future__ import annotations

import logging
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from common import distributed
from common.config import ConfigError

CHECKPOINTS = "checkpoints"
log = logging.getLogger(__name__)


def write_checkpoint(run_dir: Path, step: int, keep: int, write_parts: Callable[[Path], None], state: dict) -> Path:
    folder = run_dir / CHECKPOINTS / f"step-{step}"
    tmp = folder.with_name(folder.name + ".tmp")
    if distributed.is_main_process():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    distributed.barrier()
    write_parts(tmp)
    rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    torch.save(rng, tmp / f"rng-rank{distributed.rank()}.pt")
    if distributed.is_main_process():
        torch.save({"step": step, **state}, tmp / "state.pt")
    distributed.barrier()
    if distributed.is_main_process():
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
        for old in sorted(checkpoints(run_dir), key=_step_of)[:-keep]:
            shutil.rmtree(old)
    distributed.barrier()
    return folder


def read_checkpoint(folder: Path, what: str) -> dict:
    """`state.pt` of a checkpoint, with this rank's RNG states restored."""
    if not (folder / "state.pt").is_file():
        raise FileNotFoundError(f"{folder} is not a {what} checkpoint (no state.pt)")
    state = torch.load(folder / "state.pt", weights_only=False)
    rng_file = folder / f"rng-rank{distributed.rank()}.pt"
    if rng_file.is_file():  # absent when resuming on more ranks than saved: fresh sampling there
        rng = torch.load(rng_file, weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
    return state


def checkpoints(run_dir: Path) -> list[Path]:
    root = run_dir / CHECKPOINTS
    return [p for p in root.glob("step-*") if re.fullmatch(r"step-\d+", p.name)] if root.is_dir() else []


def _step_of(path: Path) -> int:
    return int(path.name.split("-")[1])


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted(checkpoints(run_dir), key=_step_of)
    return found[-1] if found else None


def resume_point(resume: str, run_dir: Path) -> Path | None:
    """`auto`: the newest checkpoint if any; `never`: none; else a checkpoint folder."""
    if resume == "never":
        return None
    if resume == "auto":
        return latest_checkpoint(run_dir)
    if not Path(resume).is_dir():
        raise ConfigError(f"resume: no checkpoint folder at {resume}")
    return Path(resume)


def resume(cfg, run_dir: Path, load: Callable[[Path], int]) -> int:
    """The step to start from: 0, or the one `load(checkpoint)` restores (per `cfg.resume`); the
    metrics file is cut back to it so a resumed run's log has no duplicate steps."""
    from common.tracking import truncate_metrics

    checkpoint = resume_point(cfg.resume, run_dir)
    if checkpoint is None:
        return 0
    start = load(checkpoint)
    if distributed.is_main_process():
        truncate_metrics(run_dir, start)
    log.info("resumed from %s", checkpoint)
    return start
