"""How every stage starts and ends — one way for all of them.

    cfg, run_dir = start(PPOStageConfig, argv, stage="ppo", plan=ppo.plan.plan, divisible=("prompts_per_step",))

`start` runs, in this order: parse the recipe and overrides → check that an own loop's processes
divide its global batches → join the process group the launcher describes → plan the run's memory (one log
line; a refusal when it cannot fit) → claim the run folder on rank 0 (a finished run is refused
unless `overwrite`, which deletes it) → barrier → seed. Nothing is written before the stage's own
checks of its data and models pass; the stage then creates the folder with `open_run_dir`.

Seeding, one rule: every rank is seeded with `cfg.seed`, so models, LoRA and head initialisations
and the data order are the same on every rank. Where ranks must draw different samples (PPO's
rollouts, the evaluation's sampling) the stage reseeds its sampling with `rank_seed(cfg.seed)`.

`run_stage(main)` wraps an entry point: expected errors (bad recipe, bad row, missing model, a
finished run) are one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from common import distributed
from common.config import ConfigError, parse_args
from common.data import DataError
from common.models import ModelNotFoundError
from common.runs import FINAL, RunExistsError, check_run_dir, run_dir_for
from common.timing import CLOCK

EXPECTED = (ConfigError, DataError, ModelNotFoundError, RunExistsError, FileNotFoundError)
T = TypeVar("T")


def run_stage(main: Callable[[], None]) -> int:
    """A stage's process: run `main`; an expected error is one line on stderr and exit status 2; a
    run that returns leaves `<run>/timing.json` (where its time went: `common/tracking/timing.py`)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    CLOCK.reset()
    try:
        main()
    except EXPECTED as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if distributed.is_main_process():
        CLOCK.write()
    return 0


def check_processes(cfg, divisible: tuple[str, ...]) -> None:
    """Several processes of an own-loop stage need a DeepSpeed config, and each global batch size
    named in `divisible` must split evenly over them — checked before anything is loaded."""
    world = distributed.world_size()
    if world == 1:
        return
    if not cfg.deepspeed:
        raise ConfigError(f"{world} processes need a DeepSpeed config: --deepspeed configs/deepspeed/zero2.json "
                          "(or DS=zero2 with make)")
    for key in divisible:
        if getattr(cfg, key) % world:
            raise ConfigError(f"{key} ({getattr(cfg, key)}) must be a multiple of the number of processes ({world})")


def claim_run_dir(cfg, finished: str = FINAL, what: str = "run") -> Path:
    """Rank 0 checks the run folder (`overwrite` starts afresh; a folder holding `finished` is a
    finished run and refused); every rank waits for it and gets the folder's path."""
    run_dir = run_dir_for(cfg.output_root, cfg.run_name)
    if distributed.is_main_process():
        check_run_dir(run_dir, cfg.overwrite, finished, what)
    distributed.barrier()
    return run_dir


def rank_seed(seed: int) -> int:
    """The seed of this rank's own sampling stream (rank 0 keeps `seed`)."""
    return seed + 1000 * distributed.rank()


def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def start(config_class: type[T], argv: list[str] | None, *, stage: str, plan=None, divisible: tuple[str, ...] | None = None,
          finished: str = FINAL, what: str = "run") -> tuple[T, Path]:
    """Parse → check the processes → join the process group → memory preflight → claim the run
    folder (rank 0) → barrier → seed. Returns the config and the run folder (not yet created).

    `divisible`: a stage with its own training loop (PPO, BCQ) names the global batch sizes that its
    processes split; with several processes it then needs a DeepSpeed config. None: no such check
    (a Trainer stage runs DDP without one; the evaluation shares prompts, not batches)."""
    cfg = parse_args(config_class, argv, prog=f"python -m {stage}")
    if divisible is not None:  # from the launcher's environment: refused before joining anything
        check_processes(cfg, divisible)
    distributed.init()
    if getattr(cfg, "finetune", None) == "qlora":  # one line where 4-bit training cannot run, before any model loads
        from common.models.quantized import check_qlora

        check_qlora(cfg.deepspeed, distributed.device())
    if plan is not None:
        from common.planning.preflight import preflight

        preflight(cfg, plan, stage)  # one log line; refuses a run that cannot fit
    run_dir = claim_run_dir(cfg, finished, what)
    CLOCK.stage, CLOCK.run_dir = stage, run_dir
    seed_everything(cfg.seed)
    return cfg, run_dir
