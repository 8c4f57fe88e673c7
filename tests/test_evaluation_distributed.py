"""`make eval NPROC=2`: two processes (the deepspeed launcher, gloo on the CPU) share the prompts,
rank 0 gathers every reply and writes one evaluation."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from helpers.stages import REPO, VENV_BIN, free_port

pytestmark = pytest.mark.slow


def test_make_eval_with_two_processes_covers_every_prompt_once(tiny_model_dir, other_tiny_model_dir,
                                                               tiny_reward_model, tmp_path):
    recipe = yaml.safe_load((REPO / "configs/evaluation/tiny.yaml").read_text())
    recipe.update(policies=[{"name": "base", "model": str(tiny_model_dir)},
                            {"name": "other", "model": str(other_tiny_model_dir)}],
                  reward_model=str(tiny_reward_model), judges={"reward_model": True, "mixed_reward": True, "kl": True},
                  output_root=str(tmp_path), prompts=[{"path": str(REPO / p["path"])} for p in recipe["prompts"]])
    path = tmp_path / "eval.yaml"
    path.write_text(yaml.safe_dump(recipe))
    proc = subprocess.run(["make", "-C", str(REPO), "eval", "NPROC=2", f"CONFIG={path}", f"VENV={VENV_BIN.parent}"],
                          env={**os.environ, "MASTER_PORT": str(free_port())}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "--num_gpus 2" in proc.stdout and "win vs base" in proc.stdout
    run = tmp_path / "tiny"
    report = json.loads((run / "eval.json").read_text())
    assert report["seeds"]["processes"] == 2 and report["prompts"]["total"] == 8
    assert report["comparisons"]["other"]["pairs"] == 16
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    seen = sorted((r["prompt_index"], r["sample"], r["policy"]) for r in rows)
    assert seen == sorted((i, k, p) for i in range(8) for k in range(2) for p in ("base", "other"))
    assert all(r["ref_logprob"] is not None and "rm" in r for r in rows)
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1  # rank 0 alone logs
