"""python -m evaluation --config configs/evaluation/default.yaml [--key value ...]"""

from __future__ import annotations

import sys

from common.stage import run_stage, start
from evaluation.config import EvalConfig
from evaluation.plan import plan
from evaluation.report import EVAL_FILE
from evaluation.run import run


def main(argv: list[str] | None = None) -> None:
    cfg, run_dir = start(EvalConfig, argv, stage="evaluation", plan=plan, finished=EVAL_FILE, what="evaluation")
    run(cfg, run_dir)


if __name__ == "__main__":
    sys.exit(run_stage(main))
