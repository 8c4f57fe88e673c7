"""BCQ checkpoints: everything needed to resume (`common.training.checkpoints` writes the folder):
the Q network's trainable weights and optimizer (ZeRO shards per rank under DeepSpeed), the target
network (`target.pt`) and each rank's RNGs. Records are visited in an order that is a function of
the seed and the step (`common.data.batch_for_step`), so the data position is the step."""

from __future__ import annotations

from pathlib import Path

import torch

from common import distributed
from common.training.checkpoints import read_checkpoint, write_checkpoint


def save_checkpoint(run_dir: Path, step: int, trainer, keep: int) -> None:
    def parts(tmp: Path) -> None:
        trainer.q.save(tmp, "q")
        if distributed.is_main_process():
            torch.save(trainer.target, tmp / "target.pt")

    write_checkpoint(run_dir, step, keep, parts, {})


def load_checkpoint(folder: Path, trainer) -> int:
    state = read_checkpoint(folder, "BCQ")
    trainer.q.load(folder, "q")
    trainer.target = torch.load(folder / "target.pt", map_location=trainer.device, weights_only=False)
    return state["step"]
