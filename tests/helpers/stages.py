"""What many tests share: the repository's paths, free ports, the 2-process `make` launch, SIGKILL at a
training step, and the comparison of two runs' metrics (an exact resume must log the same figures)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_two_processes(target: str, stage: str, recipe: str, args: str) -> subprocess.CompletedProcess:
    """`make <target> NPROC=2 DS=<stage>` with this venv, asserting it succeeded."""
    env = {**os.environ, "MASTER_PORT": str(free_port())}
    proc = subprocess.run(
        ["make", "-C", str(REPO), target, "NPROC=2", f"DS={stage}", f"CONFIG={recipe}",
         f"VENV={VENV_BIN.parent}", f"ARGS={args}"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


TIMINGS = ("tokens_per_second", "eps", "time/generate", "time/score", "time/train", "perf/peak_memory_gb")


def assert_same_metrics(run_a: Path, run_b: Path, steps: int, abs_tol: float = 1e-6) -> None:
    """Two runs logged the same figures at every step (timings aside): what an exact resume must give."""
    from common.tracking import read_metrics

    a, b = read_metrics(run_a), read_metrics(run_b)
    assert [r["step"] for r in b] == list(range(1, steps + 1))
    for ra, rb in zip(a, b):
        for key in ra:
            if key not in TIMINGS:
                assert rb[key] == pytest.approx(ra[key], abs=abs_tol), (ra["step"], key)


def run_killed_at_step(module: str, step: int, args: list[str]) -> None:
    """`python -m MODULE ARGS` in a subprocess that SIGKILLs itself after training step `step`
    (tests/helpers/killed_at_step.py); asserts it really died of the kill."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests/helpers/killed_at_step.py"), module, str(step), *args],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
