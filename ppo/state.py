"""PPO run state: which prompts a step uses, and checkpoints of everything needed to resume.

A checkpoint (`<run>/checkpoints/step-N/`, written to a temporary name and renamed) holds the
actor's trainable weights and optimizer, the critic's, the KL controller and reward normalizer
(`state.pt`) and each rank's RNGs, so a resumed run repeats an uninterrupted one exactly (CPU).
Models are `actor.pt`/`critic.pt` in one process, DeepSpeed checkpoints (ZeRO shards per rank)
under `actor/`, `critic/` with DeepSpeed.
The prompt order is a function of the seed and the step, so the data position is the step.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

from common import distributed
from ppo.data import Prompt

CHECKPOINTS = "checkpoints"


def batch_for_step(prompts: list[Prompt], step: int, size: int, seed: int) -> list[Prompt]:
    """Prompts of step `step`: consecutive slices of a per-epoch seeded shuffle."""
    n = len(prompts)
    orders: dict[int, list[int]] = {}
    out = []
    for k in range(step * size, (step + 1) * size):
        epoch, pos = divmod(k, n)
        if epoch not in orders:
            orders[epoch] = list(range(n))
            random.Random(seed + epoch).shuffle(orders[epoch])
        out.append(prompts[orders[epoch][pos]])
    return out


def save_checkpoint(run_dir: Path, step: int, trainer, mixer_state: dict, keep: int) -> Path:
    """Every rank calls this: each writes its own ZeRO shards and RNG state; rank 0 the rest."""
    folder = run_dir / CHECKPOINTS / f"step-{step}"
    tmp = folder.with_name(folder.name + ".tmp")
    if distributed.is_main_process():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    distributed.barrier()
    trainer.actor.save(tmp, "actor")
    if trainer.critic is not None:
        trainer.critic.save(tmp, "critic")
    rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    torch.save(rng, tmp / f"rng-rank{distributed.rank()}.pt")
    if distributed.is_main_process():
        torch.save({"step": step, "kl_coef": trainer.kl_ctl.value, "mixer": mixer_state}, tmp / "state.pt")
    distributed.barrier()
    if distributed.is_main_process():
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
        for old in sorted(checkpoints(run_dir), key=_step_of)[:-keep]:
            shutil.rmtree(old)
    distributed.barrier()
    return folder


def checkpoints(run_dir: Path) -> list[Path]:
    root = run_dir / CHECKPOINTS
    return [p for p in root.glob("step-*") if re.fullmatch(r"step-\d+", p.name)] if root.is_dir() else []


def _step_of(path: Path) -> int:
    return int(path.name.split("-")[1])


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted(checkpoints(run_dir), key=_step_of)
    return found[-1] if found else None


def load_checkpoint(folder: Path, trainer, mixer) -> int:
    """Restore everything saved by `save_checkpoint`; returns the step to continue after."""
    if not (folder / "state.pt").is_file():
        raise FileNotFoundError(f"{folder} is not a PPO checkpoint (no state.pt)")
    state = torch.load(folder / "state.pt", weights_only=False)
    trainer.actor.load(folder, "actor")
    if trainer.critic is not None:
        trainer.critic.load(folder, "critic")
    trainer.kl_ctl.value = state["kl_coef"]
    mixer.load_state_dict(state["mixer"])
    rng_file = folder / f"rng-rank{distributed.rank()}.pt"
    if rng_file.is_file():  # absent when resuming on more ranks than saved: fresh sampling there
        rng = torch.load(rng_file, weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
    return state["step"]
