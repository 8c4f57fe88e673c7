"""python -m tools.plan --config configs/ppo/cluster-qwen3-8b.yaml --nnodes 2 --nproc 8 --gpu_memory 80

Plans any stage's recipe before launch (common/planning/ has the formulas and the report): per rank,
every model's weights, gradients and optimizer states, the activations and the KV cache, the total
against the device memory, and — when it does not fit — the smallest changes that would. An
orchestrator: it knows every stage (its config class and its `plan.py`), which common/ must not.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bcq_offline.plan
import dpo.plan
import evaluation.plan
import ppo.plan
import reward_model.plan
import sft.plan
from bcq_offline.config import BCQStageConfig
from common.config import ConfigError, parse_args
from common.planning.formulas import Plan, PlanError, Setup, setup_from
from common.planning.preflight import PlanFn, report
from dpo.config import DPOStageConfig
from evaluation.config import EvalConfig
from ppo.config import PPOStageConfig
from reward_model.config import RMStageConfig
from sft.config import SFTStageConfig

# stage (its configs/ folder) → (config class, plan function)
STAGES: dict[str, tuple[type, PlanFn]] = {
    "sft": (SFTStageConfig, sft.plan.plan),
    "reward_model": (RMStageConfig, reward_model.plan.plan),
    "dpo": (DPOStageConfig, dpo.plan.plan),
    "ppo": (PPOStageConfig, ppo.plan.plan),
    "bcq_offline": (BCQStageConfig, bcq_offline.plan.plan),
    "evaluation": (EvalConfig, evaluation.plan.plan),
}


def stage_of(recipe: str, stage: str | None) -> str:
    if stage:
        if stage not in STAGES:
            raise PlanError(f"--stage must be one of {', '.join(STAGES)}, got {stage!r}")
        return stage
    folder = Path(recipe).resolve().parent.name
    if folder not in STAGES:
        raise PlanError(f"{recipe}: cannot tell the stage from its folder '{folder}' (one of configs/"
                        f"{{{','.join(STAGES)}}}/); pass --stage")
    return folder


def plan_for(stage: str, cfg, setup: Setup) -> Plan:
    return STAGES[stage][1](cfg, setup)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.plan", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="any stage's recipe (configs/<stage>/*.yaml)")
    ap.add_argument("--stage", choices=list(STAGES), help="when the recipe is not in configs/<stage>/")
    ap.add_argument("--nnodes", type=int, default=1, help="nodes")
    ap.add_argument("--nproc", type=int, default=1, help="processes (GPUs) per node")
    ap.add_argument("--gpu_memory", type=float, default=None, help="GiB of memory per GPU (e.g. 80); none = no verdict")
    ap.add_argument("--deepspeed", default=None, help="DeepSpeed JSON (default: the recipe's)")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="where it will run")
    args, overrides = ap.parse_known_args(argv)
    try:
        if args.nnodes < 1 or args.nproc < 1:
            raise PlanError(f"--nnodes and --nproc must be ≥ 1, got {args.nnodes} and {args.nproc}")
        if args.gpu_memory is not None and args.gpu_memory <= 0:
            raise PlanError(f"--gpu_memory must be > 0 GiB, got {args.gpu_memory:g}")
        stage = stage_of(args.config, args.stage)
        config_class, plan = STAGES[stage]
        try:
            cfg = parse_args(config_class, ["--config", args.config, *overrides])
        except ConfigError as e:
            raise PlanError(str(e)) from None
        setup = setup_from(args.deepspeed or cfg.deepspeed, cfg.precision, args.nnodes * args.nproc, args.gpu_memory,
                           args.device)
        text, p = report(plan, cfg, setup, args.config, stage)
    except (PlanError, FileNotFoundError) as e:
        print(f"plan: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0 if p.fits() is not False else 1


if __name__ == "__main__":
    sys.exit(main())
