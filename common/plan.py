"""python -m common.plan --config configs/ppo/cluster-qwen3-8b.yaml --nnodes 2 --nproc 8 --gpu_memory 80

Plans any stage's recipe before launch (common/memplan.py has the formulas): per rank, every
model's weights, gradients and optimizer states, the activations and the KV cache, the total
against the device memory, and — when it does not fit — the smallest changes that would.
Also `preflight`, which every stage runs at start: one log line, and a refusal (with the plan)
when the estimate exceeds the memory the process can see by a clear margin.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import os
import sys
from pathlib import Path

from common.memplan import GiB, Plan, PlanError, Setup, setup_from

log = logging.getLogger(__name__)

# stage (its configs/ folder) → (config class, plan function)
STAGES = {
    "sft": ("sft.config:SFTStageConfig", "sft.plan:plan"),
    "reward_model": ("reward_model.config:RMStageConfig", "reward_model.plan:plan"),
    "dpo": ("dpo.config:DPOStageConfig", "dpo.plan:plan"),
    "ppo": ("ppo.config:PPOStageConfig", "ppo.plan:plan"),
    "bcq_offline": ("bcq_offline.config:BCQStageConfig", "bcq_offline.plan:plan"),
    "evaluation": ("evaluation.config:EvalConfig", "evaluation.plan:plan"),
}
REFUSE_ABOVE = 1.2  # a stage refuses to start when its plan exceeds the visible memory by more than 20%


def _load(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


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
    return _load(STAGES[stage][1])(cfg, setup)


# ----------------------------------------------------------------------------- what would fit


def _variants(stage: str, cfg, setup: Setup):
    """(description, cfg, setup) for each single change that saves memory and applies."""
    ds3 = dataclasses.replace(setup, zero=3, bf16=True)
    if setup.zero != 3:
        yield "DeepSpeed ZeRO-3 (DS=zero3)", cfg, ds3
    if not (setup.offload_optimizer and setup.offload_param):
        yield "ZeRO-3 with CPU offload of optimizer and weights (DS=zero3_offload)", cfg, dataclasses.replace(
            ds3, offload_optimizer=True, offload_param=True)
    if getattr(cfg, "finetune", None) == "full":
        yield "LoRA instead of full fine-tuning (--finetune lora)", dataclasses.replace(cfg, finetune="lora"), setup
    if getattr(cfg, "gradient_checkpointing", True) is False:
        yield "gradient checkpointing (--gradient_checkpointing true)", dataclasses.replace(
            cfg, gradient_checkpointing=True), setup
    for key, label in (("batch_size", "micro-batch"), ("mini_batch_size", "training mini-batch"),
                       ("prompts_per_step", "generation batch"), ("eval_batch_size", "decoding batch")):
        value = getattr(cfg, key, None)
        if isinstance(value, int) and value > 1:
            try:
                smaller = dataclasses.replace(cfg, **{key: value // 2})
            except (ValueError, TypeError):
                continue
            yield f"half the {label} (--{key} {value // 2})", smaller, setup
    yield f"twice the GPUs ({2 * setup.world} ranks)", cfg, dataclasses.replace(setup, world=2 * setup.world)


def suggestions(stage: str, cfg, setup: Setup) -> list[tuple[str, float, bool]]:
    """(change, new total bytes per rank, fits) for each single change, smallest total first."""
    out = []
    for text, c, s in _variants(stage, cfg, setup):
        try:
            p = plan_for(stage, c, s)
        except (PlanError, ValueError):
            continue
        out.append((text, p.total, bool(p.fits())))
    return sorted(out, key=lambda t: t[1])


def combination(stage: str, cfg, setup: Setup, limit: int = 4) -> list[tuple[str, float, bool]]:
    """Greedy: apply the change that saves most, then the next, until the plan fits (at most `limit`)."""
    steps: list[tuple[str, float, bool]] = []
    for _ in range(limit):
        best = None
        for text, c, s in _variants(stage, cfg, setup):
            if any(text.split(" (")[0] == done.split(" (")[0] for done, _, _ in steps):
                continue  # one change of each kind
            try:
                p = plan_for(stage, c, s)
            except (PlanError, ValueError):
                continue
            if best is None or p.total < best[1].total:
                best = (text, p, c, s)
        if best is None or (steps and best[1].total >= steps[-1][1]):
            break
        text, p, cfg, setup = best
        steps.append((text, p.total, bool(p.fits())))
        if p.fits():
            break
    return steps


def report(stage: str, cfg, setup: Setup, recipe: str) -> tuple[str, Plan]:
    p = plan_for(stage, cfg, setup)
    ds = f"ZeRO-{setup.zero}" if setup.zero is not None else "no DeepSpeed"
    head = (f"memory plan of {recipe} ({stage}) — {setup.world} rank(s), {ds}, "
            f"{'bf16' if setup.bf16 else 'fp32'}, {setup.device}")
    text = [head, p.table()]
    if p.fits() is False:
        options = suggestions(stage, cfg, setup)
        fitting = [o for o in options if o[2]]
        if fitting:
            text.append("what would fit (one change each; the new total per rank):")
            text += [f"  ✓ {change}: {total / GiB:.2f} GiB" for change, total, _ in fitting[:6]]
        else:
            text.append("no single change fits; together (each line adds one; the new total per rank):")
            text += [f"  {'✓' if fits else '+'} {change}: {total / GiB:.2f} GiB"
                     for change, total, fits in combination(stage, cfg, setup)]
    return "\n".join(text), p


# ----------------------------------------------------------------------------- at a stage's start


def visible_memory_gb(device) -> tuple[float, str]:
    """What this process can use: free CUDA memory on its GPU, or the host's available memory
    shared by the processes on it."""
    import torch

    from common import distributed

    if getattr(device, "type", str(device)) == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free / GiB, "free on the GPU"
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None:
        return 0.0, ""
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", distributed.world_size())))
    return available / local / GiB, "available on the host" + (f" / {local} processes" if local > 1 else "")


def preflight(stage: str, cfg) -> Plan | None:
    """Plan the stage as it is about to run; log one line; refuse when it cannot fit.

    A plan that cannot be made (a hub model whose config.json is not at hand) is a warning, never a
    reason not to run."""
    from common import distributed
    from common.config import ConfigError

    device = distributed.device()
    try:
        setup = setup_from(cfg.deepspeed, cfg.precision, distributed.world_size(), None, device.type)
        visible, where = visible_memory_gb(device)
        setup = dataclasses.replace(setup, device_gb=visible or None)
        text, p = report(stage, cfg, setup, getattr(cfg, "run_name", stage))
    except Exception as e:  # noqa: BLE001 — the plan informs; a plan that cannot be made never stops a run
        log.warning("memory plan skipped: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)
        return None
    if distributed.is_main_process():
        log.info("memory plan: %.2f GiB per rank (models %.2f + %s %.2f) of %.1f GiB %s",
                 p.total / GiB, p.resident / GiB, p.peak_phase[0] or "-", p.peak_phase[1] / GiB, visible, where)
    if visible and p.total > REFUSE_ABOVE * visible * GiB and cfg.memory_check:
        raise ConfigError(f"the memory plan ({p.total / GiB:.1f} GiB per rank) exceeds the {visible:.1f} GiB {where} "
                          f"by more than {100 * (REFUSE_ABOVE - 1):.0f}%; --memory_check false runs anyway\n{text}")
    return p


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m common.plan", description=__doc__,
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
        from common.config import ConfigError, parse_args

        try:
            cfg = parse_args(_load(STAGES[stage][0]), ["--config", args.config, *overrides])
        except ConfigError as e:
            raise PlanError(str(e)) from None
        setup = setup_from(args.deepspeed or cfg.deepspeed, cfg.precision, args.nnodes * args.nproc, args.gpu_memory,
                           args.device)
        text, p = report(stage, cfg, setup, args.config)
    except (PlanError, FileNotFoundError) as e:
        print(f"plan: {e}", file=sys.stderr)
        return 2
    print(text)
    return 0 if p.fits() is not False else 1


if __name__ == "__main__":
    sys.exit(main())
