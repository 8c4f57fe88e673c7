"""Planning a stage's memory as it starts, and what would fit when it does not.

`preflight(cfg, plan)` runs at every stage's start (common/stage.py): the stage's own plan function
(`<stage>/plan.py`) on the recipe as resolved, one log line, and a refusal (with the plan and the
changes that would fit) when the estimate exceeds the memory this process can see by a clear margin.
The formulas live in `formulas.py`; `python -m tools.plan` prints the same report before a launch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path

from common.planning.formulas import GiB, Plan, PlanError, Setup, setup_from

log = logging.getLogger(__name__)

REFUSE_ABOVE = 1.2  # a stage refuses to start when its plan exceeds the visible memory by more than 20%
PlanFn = Callable[[object, Setup], Plan]  # a stage's plan(cfg, setup)


# ----------------------------------------------------------------------------- what would fit


def _variants(cfg, setup: Setup):
    """(description, cfg, setup) for each single change that saves memory and applies."""
    ds3 = dataclasses.replace(setup, zero=3, bf16=True)
    if setup.zero != 3:
        yield "DeepSpeed ZeRO-3 (DS=zero3)", cfg, ds3
    if not (setup.offload_optimizer and setup.offload_param):
        yield "ZeRO-3 with CPU offload of optimizer and weights (DS=zero3_offload)", cfg, dataclasses.replace(
            ds3, offload_optimizer=True, offload_param=True)
    if getattr(cfg, "finetune", None) == "full":
        yield "LoRA instead of full fine-tuning (--finetune lora)", dataclasses.replace(cfg, finetune="lora"), setup
    if getattr(cfg, "finetune", None) in ("full", "lora") and setup.zero != 3:
        yield "QLoRA: LoRA on a 4-bit base (--finetune qlora)", dataclasses.replace(cfg, finetune="qlora"), setup
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


def suggestions(plan: PlanFn, cfg, setup: Setup) -> list[tuple[str, float, bool]]:
    """(change, new total bytes per rank, fits) for each single change, smallest total first."""
    out = []
    for text, c, s in _variants(cfg, setup):
        try:
            p = plan(c, s)
        except (PlanError, ValueError):
            continue
        out.append((text, p.total, bool(p.fits())))
    return sorted(out, key=lambda t: t[1])


def combination(plan: PlanFn, cfg, setup: Setup, limit: int = 4) -> list[tuple[str, float, bool]]:
    """Greedy: apply the change that saves most, then the next, until the plan fits (at most `limit`)."""
    steps: list[tuple[str, float, bool]] = []
    for _ in range(limit):
        best = None
        for text, c, s in _variants(cfg, setup):
            if any(text.split(" (")[0] == done.split(" (")[0] for done, _, _ in steps):
                continue  # one change of each kind
            try:
                p = plan(c, s)
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


def report(plan: PlanFn, cfg, setup: Setup, recipe: str, stage: str) -> tuple[str, Plan]:
    p = plan(cfg, setup)
    ds = f"ZeRO-{setup.zero}" if setup.zero is not None else "no DeepSpeed"
    head = (f"memory plan of {recipe} ({stage}) — {setup.world} rank(s), {ds}, "
            f"{'bf16' if setup.bf16 else 'fp32'}, {setup.device}")
    text = [head, p.table()]
    if p.fits() is False:
        options = suggestions(plan, cfg, setup)
        fitting = [o for o in options if o[2]]
        if fitting:
            text.append("what would fit (one change each; the new total per rank):")
            text += [f"  ✓ {change}: {total / GiB:.2f} GiB" for change, total, _ in fitting[:6]]
        else:
            text.append("no single change fits; together (each line adds one; the new total per rank):")
            text += [f"  {'✓' if fits else '+'} {change}: {total / GiB:.2f} GiB"
                     for change, total, fits in combination(plan, cfg, setup)]
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


def preflight(cfg, plan: PlanFn, stage: str) -> Plan | None:
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
        text, p = report(plan, cfg, setup, getattr(cfg, "run_name", stage), stage)
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
