"""`python -m ppo` end to end on the tiny recipe: outputs, logs, resume after SIGKILL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from common.models import load_model_and_tokenizer
from common.tracking import read_metrics
from ppo.__main__ import main

from helpers.stages import REPO

TINY = str(REPO / "configs/ppo/tiny.yaml")
REQUIRED = ("objective/kl", "objective/entropy", "objective/rlhf_reward", "objective/scores", "policy/approxkl_avg",
            "policy/clipfrac_avg", "loss/policy_avg", "loss/value_avg", "val/clipfrac_avg", "val/explained_variance", "kl_coef",
            "response_length", "tokens_per_second", "time/generate", "time/score", "time/train",
            "perf/peak_memory_gb")


def args(model_dir, out: Path, *extra: str) -> list[str]:
    return ["--config", TINY, "--policy", str(model_dir), "--output_root", str(out),
            "--prompts", f"[{{path: {REPO}/data/prompts/general.jsonl}}, {{path: {REPO}/data/prompts/code.jsonl}}]", *extra]


def test_tiny_run_logs_every_metric_and_saves_a_loadable_policy(tiny_model_dir, tmp_path):
    main(args(tiny_model_dir, tmp_path))
    run = tmp_path / "tiny"
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(key in rows[-1] for key in REQUIRED), set(REQUIRED) - set(rows[-1])
    assert "reward/code/efficiency" in rows[-1] and "reward/general/diversity" in rows[-1]
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 * 4 * 2 and {"step", "prompt", "response", "score", "domain"} <= set(samples[0])
    assert (run / "reward_curve.png").stat().st_size > 1000
    model, _ = load_model_and_tokenizer(str(run / "model"))  # the adapter merges onto the tiny base
    assert model.config.num_hidden_layers == 2




def test_value_head_on_the_policy_runs_and_checkpoints_without_a_critic(tiny_model_dir, tmp_path):
    main(args(tiny_model_dir, tmp_path, "--value_model", "policy_head", "--steps", "2"))
    run = tmp_path / "tiny"
    assert [r["step"] for r in read_metrics(run)] == [1, 2]
    ckpt = run / "checkpoints/step-2"
    assert (ckpt / "actor.pt").is_file() and not (ckpt / "critic.pt").exists()
    actor = torch.load(ckpt / "actor.pt", weights_only=False)["module"]
    assert {"value_head.weight", "value_head.bias"} <= set(actor)


def test_several_processes_need_deepspeed_and_divisible_batches(monkeypatch, tmp_path):
    from common.config import ConfigError

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="2 processes need a DeepSpeed config"):
        main(["--config", TINY, "--output_root", str(tmp_path)])
    with pytest.raises(ConfigError, match=r"prompts_per_step \(3\) must be a multiple of the number of processes \(2\)"):
        main(["--config", TINY, "--output_root", str(tmp_path), "--deepspeed", "configs/deepspeed/zero2.json",
              "--prompts_per_step", "3", "--mini_batch_size", "2"])
    assert not tmp_path.joinpath("tiny").exists()  # refused before anything was written


@pytest.mark.parametrize("estimator", ["grpo", "rloo", "reinforce_pp"])
def test_critic_free_estimators_build_no_critic_and_log_no_value_figures(estimator, tiny_model_dir, tmp_path):
    main(args(tiny_model_dir, tmp_path, "--advantage_estimator", estimator, "--steps", "2"))
    run = tmp_path / "tiny"
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2]
    value_keys = {"loss/value_avg", "val/clipfrac_avg", "val/explained_variance"}
    assert not value_keys & set(rows[-1]), "value figures are absent, not zero, without a critic"
    assert all(key in rows[-1] for key in set(REQUIRED) - value_keys)
    ckpt = run / "checkpoints/step-2"
    assert (ckpt / "actor.pt").is_file() and not (ckpt / "critic.pt").exists()
    actor = torch.load(ckpt / "actor.pt", weights_only=False)["module"]
    assert not any(k.startswith("value_head") for k in actor)  # no value head either
    cfg = (run / "config.yaml").read_text()
    assert f"advantage_estimator: {estimator}" in cfg
