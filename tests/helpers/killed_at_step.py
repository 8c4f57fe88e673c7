"""Run `python -m MODULE ARGS...` but SIGKILL the process right after training step N.

Usage: python tests/helpers/killed_at_step.py MODULE N --config ... [--key value ...]
Every `transformers.Trainer` made in the process gets a callback that does the kill, and
PPO's and BCQ's step counters do the same, so the point is deterministic; the kill itself is a real
SIGKILL: no cleanup code runs, as when a node dies or the OOM killer strikes.
"""

import os
import runpy
import signal
import sys

import transformers

module, kill_step = sys.argv[1], int(sys.argv[2])


class KillAt(transformers.TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == kill_step:
            os.kill(os.getpid(), signal.SIGKILL)


_init = transformers.Trainer.__init__


def init_and_arm(self, *args, **kwargs):
    _init(self, *args, **kwargs)
    self.add_callback(KillAt())


transformers.Trainer.__init__ = init_and_arm

if module in ("ppo", "bcq_offline"):  # our own loops: patch their trainer's step
    import bcq_offline.trainer
    import ppo.trainer

    trainer_class = ppo.trainer.PPOTrainer if module == "ppo" else bcq_offline.trainer.BCQTrainer
    _step = trainer_class.step
    calls = []

    def step_and_maybe_die(self, batch):
        if len(calls) == kill_step:  # N steps done since this process started
            os.kill(os.getpid(), signal.SIGKILL)
        calls.append(1)
        return _step(self, batch)

    trainer_class.step = step_and_maybe_die
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
