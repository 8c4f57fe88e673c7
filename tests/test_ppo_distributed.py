"""PPO on 2 CPU processes (gloo) under DeepSpeed ZeRO-2 and ZeRO-3 learns like the 1-process run.

The reward is a rule a tiny random policy learns within 30 steps (tests/helpers/ppo_rule_reward.py);
the policy is fully fine-tuned, so under ZeRO-3 the frozen reference is a partitioned inference
engine as well. Also: `make ppo NPROC=2 DS=…` goes through the deepspeed launcher.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.models import load_model_and_tokenizer
from common.tracking import read_metrics

from helpers.stages import REPO, VENV_BIN, assert_same_metrics, free_port, make_two_processes

pytestmark = pytest.mark.slow

HELPER = str(REPO / "tests/helpers/ppo_rule_reward.py")


def rule_args(model_dir: Path, out: Path) -> list[str]:
    return ["--config", "configs/ppo/tiny.yaml", "--policy", str(model_dir), "--output_root", str(out),
            "--finetune", "full", "--prompts_per_step", "8", "--samples_per_prompt", "2", "--mini_batch_size", "8",
            "--max_new_tokens", "8", "--policy_lr", "1e-2", "--critic_lr", "3e-3", "--ppo_epochs", "4",
            "--missing_eos_penalty", "null", "--kl_coef", "0.05", "--steps", "30", "--save_steps", "30",
            "--precision", "fp32"]


def gain(run: Path) -> float:
    """Mean score of the last 5 steps minus that of the first 5."""
    scores = [r["objective/scores"] for r in read_metrics(run)]
    assert len(scores) == 30
    return sum(scores[-5:]) / 5 - sum(scores[:5]) / 5


@pytest.fixture(scope="module")
def one_process_gain(tiny_model_dir, tmp_path_factory) -> float:
    out = tmp_path_factory.mktemp("ppo-one")
    proc = subprocess.run([sys.executable, HELPER, *rule_args(tiny_model_dir, out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return gain(out / "tiny")


@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_two_processes_learn_like_one(stage, one_process_gain, tiny_model_dir, tmp_path):
    cmd = [str(VENV_BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()), HELPER,
           *rule_args(tiny_model_dir, tmp_path), "--deepspeed", f"configs/deepspeed/{stage}.json"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "tiny"
    # measured over seeds 42, 1, 2 on an AVX-512 CPU in fp32: one process +0.20…+0.27, two +0.10…+0.15 (40–78%
    # of one's in these 30 steps, the same before and after the stages' restructure): the thresholds are half
    # the worst case — the ranks learn together, not necessarily step for step like one process
    assert one_process_gain > 0.1, one_process_gain  # the rule is learnable at all
    assert gain(run) > 0.05 and gain(run) > 0.2 * one_process_gain, (gain(run), one_process_gain)
    assert all(math.isfinite(r["objective/kl"]) for r in read_metrics(run))
    ckpt = run / "checkpoints/step-30"
    for part in ("actor", "critic"):
        shards = sorted(p.name for p in (ckpt / part).glob("*optim_states.pt"))
        assert len(shards) == 2, f"{part}: optimizer state partitioned over 2 ranks: {shards}"
    assert {p.name for p in ckpt.glob("rng-rank*.pt")} == {"rng-rank0.pt", "rng-rank1.pt"}
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1, "only rank 0 logs to W&B"
    base, _ = load_model_and_tokenizer(str(tiny_model_dir))
    trained, _ = load_model_and_tokenizer(str(run / "model"))  # under ZeRO-3: gathered, not partitions
    before, after = base.state_dict(), trained.state_dict()
    assert all(after[k].shape == before[k].shape for k in before)
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_make_ppo_two_processes_then_sigkill_and_resume(tiny_model_dir, tmp_path):
    """The LoRA tiny recipe through `make ppo NPROC=2 DS=zero2`; the same run killed (SIGKILL, both
    ranks) after step 5 and resumed from its step-4 checkpoint repeats the uninterrupted metrics."""
    args = ["--policy", str(tiny_model_dir), "--output_root"]
    proc = make_two_processes("ppo", "zero2", "configs/ppo/tiny.yaml", " ".join([*args, str(tmp_path / "a")]))
    assert "--num_gpus 2" in proc.stdout and "PPO done" in proc.stdout

    killed = subprocess.run(
        [str(VENV_BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()), "--no_local_rank",
         str(REPO / "tests/helpers/killed_at_step.py"), "ppo", "5", "--config", "configs/ppo/tiny.yaml",
         *args, str(tmp_path / "b"), "--deepspeed", "configs/deepspeed/zero2.json"],
        cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert killed.returncode != 0 and not (tmp_path / "b/tiny/model").exists(), killed.stdout[-2000:]
    make_two_processes("ppo", "zero2", "configs/ppo/tiny.yaml", " ".join([*args, str(tmp_path / "b")]))
    assert_same_metrics(tmp_path / "a/tiny", tmp_path / "b/tiny", 6, abs_tol=1e-5)
    ids = {p.name.rsplit("-", 1)[1] for p in (tmp_path / "b/tiny/wandb").glob("offline-run-*")}
    assert len(ids) == 1, f"the resumed run continues the same W&B run: {ids}"


def test_zero3_scores_with_a_partitioned_reward_model(tiny_model_dir, tmp_path):
    """Under ZeRO-3 the reward model is an inference engine holding half of its weights per rank."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    rm_dir = tmp_path / "rm"
    torch.manual_seed(0)
    rm = AutoModelForSequenceClassification.from_pretrained(str(tiny_model_dir), num_labels=1)
    tok = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    rm.config.pad_token_id = tok.pad_token_id
    rm.save_pretrained(rm_dir)
    tok.save_pretrained(rm_dir)
    (rm_dir / "reward_config.json").write_text('{"max_length": 64, "reward_mean": 0.0, "reward_std": 1.0}')
    args = f"--policy {tiny_model_dir} --reward_model {rm_dir} --output_root {tmp_path / 'out'} --steps 2"
    make_two_processes("ppo", "zero3", "configs/ppo/tiny.yaml", args)
    rows = read_metrics(tmp_path / "out/tiny")
    assert [r["step"] for r in rows] == [1, 2]
    # the accuracy component is the reward model's score: present and finite for every domain seen
    accuracy = [v for r in rows for k, v in r.items() if k.endswith("/accuracy")]
    assert accuracy and all(math.isfinite(v) for v in accuracy)


def test_grpo_on_two_processes_with_zero2_learns_without_a_critic(tiny_model_dir, tmp_path):
    cmd = [str(VENV_BIN / "deepspeed"), "--num_gpus", "2", "--master_port", str(free_port()), HELPER,
           *rule_args(tiny_model_dir, tmp_path), "--deepspeed", "configs/deepspeed/zero2.json",
           "--advantage_estimator", "grpo"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "tiny"
    assert gain(run) > 0.1, gain(run)
    assert "loss/value_avg" not in read_metrics(run)[-1]
    ckpt = run / "checkpoints/step-30"
    assert len(sorted((ckpt / "actor").glob("*optim_states.pt"))) == 2 and not (ckpt / "critic").exists()
