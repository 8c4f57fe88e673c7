"""PPO run state: which prompts a step uses, and checkpoints of everything needed to resume.

A checkpoint (`<run>/checkpoints/step-N/state.pt`, written to a temporary name and renamed)
holds the policy's trainable weights, the critic, both optimizers, the KL controller, the
reward normalizer and every RNG, so a resumed run repeats an uninterrupted one exactly (CPU).
The prompt order is a function of the seed and the step, so the data position is the step.
"""

from __future__ import annotations

import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch

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


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k in names}


def save_checkpoint(run_dir: Path, step: int, trainer, mixer_state: dict, keep: int) -> Path:
    folder = run_dir / CHECKPOINTS / f"step-{step}"
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "step": step,
            "policy": trainable_state(trainer.policy),
            "critic": trainable_state(trainer.critic),
            "policy_opt": trainer.policy_opt.state_dict(),
            "critic_opt": trainer.critic_opt.state_dict(),
            "kl_coef": trainer.kl_ctl.value,
            "mixer": mixer_state,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()},
        },
        tmp / "state.pt",
    )
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)
    for old in sorted(checkpoints(run_dir), key=_step_of)[:-keep]:
        shutil.rmtree(old)
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
    state = torch.load(folder / "state.pt", weights_only=False)
    trainer.policy.load_state_dict(state["policy"], strict=False)
    trainer.critic.load_state_dict(state["critic"], strict=False)
    trainer.policy_opt.load_state_dict(state["policy_opt"])
    trainer.critic_opt.load_state_dict(state["critic_opt"])
    trainer.kl_ctl.value = state["kl_coef"]
    mixer.load_state_dict(state["mixer"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    return state["step"]
