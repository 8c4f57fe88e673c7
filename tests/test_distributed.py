"""Two-process runs on this CPU (gloo): the deepspeed launcher via `make`, and two torchrun
"nodes" meeting at a rendezvous on loopback. Each trains the tiny recipe for real."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch

from common.models import load_model_and_tokenizer
from common.tracking import read_metrics

from helpers.stages import REPO, VENV_BIN, free_port, make_two_processes

pytestmark = pytest.mark.slow


def check_trained_run(run: Path, base_dir: Path) -> None:
    assert [m["loss"] for m in read_metrics(run) if "loss" in m], "no loss logged"
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1, "only rank 0 logs to W&B"
    shards = list((run / "checkpoints").glob("checkpoint-*/global_step*/*optim_states.pt"))
    ranks = {re.search(r"pp_rank_(\d+)_", p.name).group(1) for p in shards}
    assert ranks == {"0", "1"}, "optimizer state partitioned over 2 ranks"
    base, _ = load_model_and_tokenizer(str(base_dir))
    trained, _ = load_model_and_tokenizer(str(run / "model"))
    before, after = base.state_dict(), trained.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_make_sft_two_processes_with_deepspeed(stage, tiny_model_dir, tmp_path):
    args = f"--model {tiny_model_dir} --output_root {tmp_path} --max_steps 4 --save_steps 4 --eval_steps 4"
    proc = make_two_processes("sft", stage, "configs/sft/tiny.yaml", args)
    assert "--num_gpus 2" in proc.stdout and f"configs/deepspeed/{stage}.json" in proc.stdout
    check_trained_run(tmp_path / "tiny", tiny_model_dir)


def test_two_nodes_on_loopback_with_torchrun(tiny_model_dir, tmp_path):
    port = free_port()
    cmd = [
        str(VENV_BIN / "torchrun"), "--nnodes", "2", "--nproc-per-node", "1",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "sft-test",
        "-m", "sft", "--config", "configs/sft/tiny.yaml", "--model", str(tiny_model_dir),
        "--output_root", str(tmp_path), "--deepspeed", "configs/deepspeed/zero2.json",
        "--max_steps", "4", "--save_steps", "4", "--eval_steps", "4",
    ]
    nodes = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, out in zip(nodes, outputs):
        assert node.returncode == 0, out[-3000:]
    assert sum("SFT done" in out for out in outputs) == 1, "exactly one node holds rank 0"
    check_trained_run(tmp_path / "tiny", tiny_model_dir)
    summary = json.loads((tmp_path / "tiny/summary.json").read_text())
    assert summary["global_step"] == 4
