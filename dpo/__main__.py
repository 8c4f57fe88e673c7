"""python -m dpo --config configs/dpo/default.yaml [--key value ...]"""

from __future__ import annotations

import sys

from common.stage import run_stage, start
from dpo.config import DPOStageConfig
from dpo.plan import plan
from dpo.run import run


def main(argv: list[str] | None = None) -> None:
    cfg, run_dir = start(DPOStageConfig, argv, stage="dpo", plan=plan)
    run(cfg, run_dir)


if __name__ == "__main__":
    sys.exit(run_stage(main))
