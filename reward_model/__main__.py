"""python -m reward_model --config configs/reward_model/default.yaml [--key value ...]"""

from __future__ import annotations

import sys

from common.stage import run_stage, start
from reward_model.config import RMStageConfig
from reward_model.plan import plan
from reward_model.run import run


def main(argv: list[str] | None = None) -> None:
    cfg, run_dir = start(RMStageConfig, argv, stage="reward_model", plan=plan)
    run(cfg, run_dir)


if __name__ == "__main__":
    sys.exit(run_stage(main))
