"""Test-session setup: no network, W&B offline, and one tiny local model built per session."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "2")

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from common.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def other_tiny_model_dir(tmp_path_factory) -> Path:
    """A second tiny policy: same tokenizer, other random weights."""
    from common.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama-2", seed=1)


@pytest.fixture(scope="session")
def tiny_reward_model(tiny_model_dir, tmp_path_factory) -> Path:
    """A tiny reward model trained once per session on the shipped sample preferences."""
    from reward_model.__main__ import main

    out = tmp_path_factory.mktemp("rm")
    main(["--config", str(REPO / "configs/reward_model/tiny.yaml"), "--model", str(tiny_model_dir),
          "--output_root", str(out), "--data", f"[{{path: {REPO / 'data/samples/preferences.jsonl'}}}]"])
    return out / "tiny" / "model"


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the whole test session (Debian's package; see helpers/postgres.py)."""
    from helpers.postgres import PostgresServer

    server = PostgresServer(free_port()).start()
    yield server
    server.stop()


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
