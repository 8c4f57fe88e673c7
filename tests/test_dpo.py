"""The DPO stage (TRL's DPOTrainer) end to end on the tiny model: losses logged, adapters changed,
the output loads as a policy in PPO and the evaluation stage; every loss type; pairs from K-way
rankings; over-long pairs cut and counted, not dropped; bad rows; resume after SIGKILL; 2 processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from common.tracking import read_metrics
from dpo.__main__ import main

from helpers.stages import REPO, make_two_processes

TINY = str(REPO / "configs/dpo/tiny.yaml")
SAMPLES = REPO / "data/samples/preferences.jsonl"


def dpo_args(model_dir, out: Path, *extra: str) -> list[str]:
    return ["--config", TINY, "--model", str(model_dir), "--output_root", str(out), "--data", f"[{{path: {SAMPLES}}}]",
            *extra]


def test_tiny_run_logs_losses_changes_the_adapter_and_loads_as_a_policy(tiny_model_dir, tmp_path):
    main(dpo_args(tiny_model_dir, tmp_path))
    run = tmp_path / "tiny"
    rows = read_metrics(run)
    assert [r["loss"] for r in rows if "loss" in r] and any("eval_rewards/accuracies" in r for r in rows)
    assert any("eval_rewards/margins" in r for r in rows)
    assert (run / "wandb").is_dir()
    adapter = load_file(run / "model/adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: training moved it
    meta = json.loads((run / "model/adapter_config.json").read_text())
    assert meta["base_model_name_or_path"] == str(Path(tiny_model_dir).resolve())
    # the output is a policy spec for PPO and for the evaluation stage
    from evaluation.__main__ import main as evaluate
    from ppo.__main__ import main as ppo

    ppo(["--config", str(REPO / "configs/ppo/tiny.yaml"), "--policy", str(run / "model"), "--output_root",
         str(tmp_path / "ppo"), "--steps", "1"])
    assert [r["step"] for r in read_metrics(tmp_path / "ppo/tiny")] == [1]
    policies = f"[{{name: base, model: {tiny_model_dir}}}, {{name: dpo, model: {run / 'model'}}}]"
    evaluate(["--config", str(REPO / "configs/evaluation/tiny.yaml"), "--output_root", str(tmp_path / "eval"),
              "--max_prompts", "2", "--policies", policies])
    report = json.loads((tmp_path / "eval/tiny/eval.json").read_text())
    assert report["comparisons"]["dpo"]["pairs"] == 4 and report["policies"]["dpo"]["kl"]["mean"] != 0


@pytest.mark.parametrize("loss, extra", [("ipo", []), ("robust", ["--label_smoothing", "0.1"])])
def test_every_loss_type_trains(loss, extra, tiny_model_dir, tmp_path):
    main(dpo_args(tiny_model_dir, tmp_path, "--loss_type", loss, "--max_steps", "2", *extra))
    rows = read_metrics(tmp_path / "tiny")
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows if "loss" in r)


def test_rankings_become_every_ordered_pair_and_long_pairs_are_cut_not_dropped(tiny_model_dir, tmp_path):
    from common.config import parse_args
    from common.data.preferences import PreferenceGroup
    from common.models import load_tokenizer
    from dpo.config import DPOStageConfig
    from dpo.data import pairs_of, prepare

    group = PreferenceGroup([{"role": "user", "content": "q"}], ["best", "mid", "tie-mid", "worst"], [1, 2, 2, 3])
    pairs = [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs_of(group)]
    # 1 over each of 3, each 2 over the 3; the tied pair gives none: 3 + 2 = 5
    assert sorted(pairs) == sorted([("best", "mid"), ("best", "tie-mid"), ("best", "worst"), ("mid", "worst"),
                                    ("tie-mid", "worst")])
    long_row = {"prompt": "word " * 200, "chosen": "yes " * 5, "rejected": "no " * 5}
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps(long_row) + "\n" + "".join(SAMPLES.read_text().splitlines(keepends=True)[:8]))
    cfg = parse_args(DPOStageConfig, ["--config", TINY, "--model", str(tiny_model_dir), "--data", f"[{{path: {data}}}]",
                                      "--val_fraction", "0"])
    prepared = prepare(cfg, load_tokenizer(str(tiny_model_dir)))
    assert prepared.truncated >= 1
    assert any(row["prompt"][0]["content"].startswith("word") for row in prepared.train)  # kept, not dropped




@pytest.mark.slow
def test_make_dpo_two_processes_with_zero2(tiny_model_dir, tmp_path):
    args = f"--model {tiny_model_dir} --output_root {tmp_path} --max_steps 2"  # the recipe's own sample data
    proc = make_two_processes("dpo", "zero2", "configs/dpo/tiny.yaml", args)
    assert "--num_gpus 2" in proc.stdout
    assert (tmp_path / "tiny/model/adapter_model.safetensors").is_file()
    assert len(list((tmp_path / "tiny/wandb").glob("offline-run-*"))) == 1
