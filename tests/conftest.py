"""Test-session setup: no network, W&B offline, and one tiny local model built per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("OMP_NUM_THREADS", "2")

from helpers.stages import REPO, free_port  # noqa: E402 — after the environment is set


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    from common.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def other_tiny_model_dir(tmp_path_factory) -> Path:
    """A second tiny policy: same tokenizer, other random weights."""
    from common.models.tiny import build_tiny_model

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


@pytest.fixture
def one_thread():
    """Tiny matrices: one thread is as fast as two, and far faster on a busy machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
