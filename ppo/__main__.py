"""python -m ppo --config configs/ppo/default.yaml [--key value ...]"""

from __future__ import annotations

import sys

from common.stage import run_stage, start
from ppo.config import PPOStageConfig
from ppo.plan import plan
from ppo.run import run


def main(argv: list[str] | None = None) -> None:
    cfg, run_dir = start(PPOStageConfig, argv, stage="ppo", plan=plan, divisible=("prompts_per_step", "mini_batch_size"))
    run(cfg, run_dir)


if __name__ == "__main__":
    sys.exit(run_stage(main))
