"""The pipeline's hand-offs, named once: where each stage's runs live, where a finished run keeps its
model and its report, and the keys of an evaluation report that the chain reads back.

A training stage never imports another: the hand-off is a folder (`runs/<stage>/<run>/model`) named
in the next stage's recipe. The Makefile's chain (`make ppo` builds SFT and the reward model first
when their default models are missing) and the closed loop (`loop/`) read these names from here:

    python -m common.pipeline model sft       → runs/sft/default/model
    python -m common.pipeline model reward_model
    python -m common.pipeline timing runs/sft/default runs/ppo/default …   → where the chain's time went
"""

from __future__ import annotations

import sys
from pathlib import Path

RUNS = "runs"  # every stage's output_root is runs/<stage>
FINAL = "model"  # a finished run's model folder (written as model.tmp/, renamed when whole)
EVAL_FILE = "eval.json"  # an evaluation's report (written last)
DEFAULT_RUN = "default"
STAGES = ("sft", "reward_model", "dpo", "ppo", "bcq_offline", "evaluation")


def output_root(stage: str) -> str:
    return f"{RUNS}/{stage}"


def run_folder(stage: str, name: str = DEFAULT_RUN, root: str | Path | None = None) -> Path:
    """`runs/<stage>/<name>`, or `<root>/<name>` under another output root."""
    return Path(root if root is not None else output_root(stage)) / name


def model_folder(stage: str, name: str = DEFAULT_RUN, root: str | Path | None = None) -> Path:
    """The final model of a run: `runs/<stage>/<name>/model`."""
    return run_folder(stage, name, root) / FINAL


def default_model(stage: str) -> str:
    """The default run's model as a recipe names it (a relative path from the repository root)."""
    return str(model_folder(stage))


def win_rate(report: dict, policy: str) -> dict | None:
    """An evaluation report's reward-model win-rate of `policy` over the baseline ({mean, low, high}), if judged."""
    return (report.get("comparisons", {}).get(policy) or {}).get("win_rate")


def main(argv: list[str]) -> int:
    if argv[:1] == ["timing"] and len(argv) > 1:  # each run folder's timing.json, as one table
        from common.timing import timing_table

        print(timing_table([(Path(folder).parent.name, folder) for folder in argv[1:]]))
        return 0
    if len(argv) != 2 or argv[0] not in ("model", "run") or argv[1] not in STAGES:
        print(f"usage: python -m common.pipeline model|run STAGE  (STAGE: {', '.join(STAGES)})\n"
              "       python -m common.pipeline timing RUN_FOLDER...", file=sys.stderr)
        return 2
    print(model_folder(argv[1]) if argv[0] == "model" else run_folder(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
