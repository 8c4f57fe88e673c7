"""python -m export --config configs/export/default.yaml [--run runs/ppo/default] [--key value ...]

A finished export named again with `--push_to_hub REPO` is pushed as it is (checks passed), not rebuilt."""

from __future__ import annotations

import sys

from common.config import parse_args
from common.runs import RunExistsError, run_dir_for
from common.stage import run_stage, start
from export.config import ExportConfig
from export.hub import RECORD, push
from export.run import run


def main(argv: list[str] | None = None) -> None:
    try:
        cfg, run_dir = start(ExportConfig, argv, stage="export", finished=RECORD, what="export")
    except RunExistsError:
        cfg = parse_args(ExportConfig, argv, prog="python -m export")
        if not cfg.push_to_hub or cfg.overwrite:
            raise
        folder = run_dir_for(cfg.output_root, cfg.run_name)
        print(f"pushed: {push(folder, cfg.push_to_hub, endpoint=cfg.hub_endpoint, private=cfg.private)}")
        return
    run(cfg, run_dir)


if __name__ == "__main__":
    sys.exit(run_stage(main))
