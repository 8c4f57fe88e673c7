"""python -m sft --config configs/sft/default.yaml [--key value ...]"""

from __future__ import annotations

import sys

from common.stage import run_stage, start
from sft.config import SFTStageConfig
from sft.plan import plan
from sft.run import run


def main(argv: list[str] | None = None) -> None:
    cfg, run_dir = start(SFTStageConfig, argv, stage="sft", plan=plan)
    run(cfg, run_dir)


if __name__ == "__main__":
    sys.exit(run_stage(main))
