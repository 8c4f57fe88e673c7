"""python -m bcq_offline --config configs/bcq_offline/default.yaml [--key value ...]"""

from __future__ import annotations

import sys

from bcq_offline.config import BCQStageConfig
from bcq_offline.plan import plan
from bcq_offline.run import run
from common.stage import run_stage, start


def main(argv: list[str] | None = None) -> None:
    cfg, run_dir = start(BCQStageConfig, argv, stage="bcq_offline", plan=plan, divisible=("batch_size",))
    run(cfg, run_dir)


if __name__ == "__main__":
    sys.exit(run_stage(main))
