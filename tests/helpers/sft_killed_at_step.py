"""Run `python -m sft ARGS...` but SIGKILL this process right after optimizer step N.

Usage: python tests/helpers/sft_killed_at_step.py N --config ... [--key value ...]
A callback does the kill so the point is deterministic; the kill itself is a real SIGKILL:
no cleanup code runs, exactly as when a node dies or the OOM killer strikes.
"""

import os
import signal
import sys

from transformers import TrainerCallback

import sft.train
from sft.__main__ import main

kill_step = int(sys.argv[1])


class KillAt(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)


_build = sft.train.build_trainer


def build_and_arm(*args, **kwargs):
    trainer = _build(*args, **kwargs)
    trainer.add_callback(KillAt())
    return trainer


sft.train.build_trainer = build_and_arm
main(sys.argv[2:])
