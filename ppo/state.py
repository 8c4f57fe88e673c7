"""PPO checkpoints: everything needed to resume (`common.training.checkpoints` writes the folder).

A checkpoint holds the actor's trainable weights and optimizer, the critic's, the KL
controller, the reward normalizer and the gold-reward curve so far (`state.pt`) and each rank's RNGs, so a resumed run repeats an
uninterrupted one exactly (CPU). Models are `actor.pt`/`critic.pt` in one process, DeepSpeed
checkpoints (ZeRO shards per rank) under `actor/`, `critic/` with DeepSpeed. The prompt order
is a function of the seed and the step (`common.data.batch_for_step`), so the data position is
the step.
"""

from __future__ import annotations

from pathlib import Path

from common.training.checkpoints import read_checkpoint, write_checkpoint
from ppo.gold import GoldCurve


def save_checkpoint(run_dir: Path, step: int, trainer, mixer_state: dict, keep: int, curve: GoldCurve | None = None) -> Path:
    """Every rank calls this: each writes its own ZeRO shards and RNG state; rank 0 the rest."""
    def parts(tmp: Path) -> None:
        trainer.actor.save(tmp, "actor")
        if trainer.critic is not None:
            trainer.critic.save(tmp, "critic")

    state = {"kl_coef": trainer.kl_ctl.value, "mixer": mixer_state, "gold": curve.state_dict() if curve else None}
    return write_checkpoint(run_dir, step, keep, parts, state)


def load_checkpoint(folder: Path, trainer, mixer, curve: GoldCurve | None = None) -> int:
    """Restore everything saved by `save_checkpoint`; returns the step to continue after."""
    state = read_checkpoint(folder, "PPO")
    trainer.actor.load(folder, "actor")
    if trainer.critic is not None:
        trainer.critic.load(folder, "critic")
    trainer.kl_ctl.value = state["kl_coef"]
    mixer.load_state_dict(state["mixer"])
    if curve is not None and state.get("gold"):
        curve.load_state_dict(state["gold"])
    return state["step"]
