"""Offline BCQ on 2 CPU processes (gloo) through `make bcq NPROC=2 DS=zero2|zero3`: it trains,
partitions the optimizer state over both ranks, moves the target network, and saves whole weights."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from common.tracking import read_metrics

from helpers.stages import make_two_processes

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("stage,q_trunk", [("zero2", "shared"), ("zero3", "shared"), ("zero3", "separate")])
def test_make_bcq_two_processes(stage, q_trunk, tiny_model_dir, tmp_path):
    # the recipe's data path is relative to the repo
    args = f"--model {tiny_model_dir} --output_root {tmp_path} --q_trunk {q_trunk}"
    proc = make_two_processes("bcq", stage, "configs/bcq_offline/tiny.yaml", args)
    assert "--num_gpus 2" in proc.stdout and "BCQ done" in proc.stdout
    run = tmp_path / "tiny"
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and all(r["loss/td"] >= 0 for r in rows)
    shards = list((run / "checkpoints/step-6/q").glob("*optim_states.pt"))
    assert len(shards) == 2, "optimizer state partitioned over 2 ranks"
    target = torch.load(run / "checkpoints/step-6/target.pt", weights_only=False)
    saved = load_file(str(run / "model/q.safetensors"))
    # whole tensors (gathered under ZeRO-3), and the target moved away from its start towards Q
    assert saved["q_head.weight"].shape == target["q_head.weight"].shape and saved["q_head.weight"].numel() > 0
    assert target["q_head.bias"].abs().sum() > 0  # the bias starts at 0: Polyak averaging moved it
    if q_trunk == "separate":  # Q's own LoRA trunk, partitioned under ZeRO-3: its target moved as well
        lora_b = [k for k in target if "lora_B" in k]
        assert lora_b and any(target[k].abs().sum() > 0 for k in lora_b)  # LoRA B starts at 0
    assert json.loads((run / "eval.json").read_text())["prompts"] >= 1
