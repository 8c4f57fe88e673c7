"""The SFT stage end to end on a tiny local model: data, training, outputs, resume, early stop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from common.config import parse_args
from common.data import DataError
from common.models import load_model_and_tokenizer
from common.tracking import read_metrics
from sft import data as sft_data
from sft.__main__ import main
from sft.config import SFTStageConfig

from helpers.stages import REPO, VENV_BIN

TINY = str(REPO / "configs/sft/tiny.yaml")
SAMPLES = str(REPO / "data/samples/sft_chat.jsonl")


def tiny_args(model_dir, out: Path, *extra: str) -> list[str]:
    return ["--config", TINY, "--model", str(model_dir), "--output_root", str(out), *extra]


def tiny_cfg(model_dir, out, *extra) -> SFTStageConfig:
    cfg = parse_args(SFTStageConfig, tiny_args(model_dir, out, *extra))
    cfg.data[0].path = SAMPLES
    return cfg


# ------------------------------------------------------------------------------------- data


def test_prepare_reports_every_hygiene_step(tiny_model_dir, tmp_path):
    cfg = tiny_cfg(tiny_model_dir, tmp_path)
    _, tok = load_model_and_tokenizer(str(tiny_model_dir))
    data = sft_data.prepare(cfg, tok)
    steps = [s["step"] for s in data.report.steps]
    assert steps[:5] == ["read", "empty turns", "no assistant reply", "exact duplicates", "near-duplicates"]
    assert steps[-2:] == ["validation split", "weighted mix"]
    assert data.report.steps[0]["in"] == 60
    assert len(data.train) + len(data.validation) == data.report.steps[-3]["kept"]
    assert all(m[-1]["role"] == "assistant" for m in data.train["messages"])


def test_hygiene_drops_duplicates_empty_turns_and_long_chats(tiny_model_dir, tmp_path):
    def chat(q, a):
        return json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})

    long_answer = "word " * 400
    lines = [chat(f"question number {i} about topic {i * 7}", f"answer {i}") for i in range(20)]
    lines += [chat("question number 3 about topic 21", "answer 3"), chat("Question  number 3 about topic 21", "answer 3")]
    lines += [chat("empty reply", "  "), chat("long", long_answer),
              json.dumps({"messages": [{"role": "user", "content": "no reply"}]})]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(lines) + "\n")
    cfg = tiny_cfg(tiny_model_dir, tmp_path, "--hygiene.val_fraction", "0.1", "--hygiene.max_tokens", "200")
    cfg.data[0].path = str(path)
    _, tok = load_model_and_tokenizer(str(tiny_model_dir))
    report = {s["step"]: s["dropped"] for s in sft_data.prepare(cfg, tok).report.steps}
    assert report["empty turns"] == 1
    assert report["no assistant reply"] == 1
    assert report["exact duplicates"] == 2
    assert report["length 4..200 tokens"] == 1


def test_weights_subsample_and_repeat_sources(tiny_model_dir, tmp_path):
    base = tiny_cfg(tiny_model_dir, tmp_path, "--hygiene.val_fraction", "0")
    _, tok = load_model_and_tokenizer(str(tiny_model_dir))
    n = len(sft_data.prepare(base, tok).train)
    base.data[0].weight = 2.0
    assert len(sft_data.prepare(base, tok).train) == 2 * n
    base.data[0].weight = 0.5
    assert len(sft_data.prepare(base, tok).train) == round(n / 2)


def test_malformed_row_stops_before_anything_is_written(tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "completion": "a"}\n{"messages": [{"role": "user", "content": 3}]}\n')
    out = tmp_path / "runs"
    with pytest.raises(DataError, match=r"bad\.jsonl:2: messages\[0\]\.content must be a string"):
        main(tiny_args(tiny_model_dir, out, "--data", f"[{{path: {bad}}}]"))
    assert not out.exists()


def test_command_line_error_is_one_clear_line(tiny_model_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "sft", *tiny_args(tiny_model_dir, tmp_path, "--lora.rnak", "4")],
        cwd=REPO, capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "unknown key 'lora.rnak' (did you mean 'lora.rank'?)" in proc.stderr
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------- training


def run_tiny(model_dir, out, *extra) -> Path:
    main(tiny_args(model_dir, out, "--data", f"[{{path: {SAMPLES}}}]", *extra))
    return out / "tiny"


def changed_params(before: dict, model) -> tuple[int, int]:
    after = model.state_dict()
    changed = sum(not torch.equal(before[k], after[k]) for k in before)
    return changed, len(before)


def test_lora_run_logs_loss_trains_and_saves_a_loadable_adapter(tiny_model_dir, tmp_path):
    run = run_tiny(tiny_model_dir, tmp_path)
    metrics = read_metrics(run)
    assert [m["loss"] for m in metrics if "loss" in m], "no training loss logged"
    assert any("eval_loss" in m for m in metrics)
    assert (run / "config.yaml").is_file() and (run / "data_report.json").is_file()
    adapter = load_file(run / "model/adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.abs().sum() > 0 for v in lora_b), "LoRA B starts at zero and must have moved"
    base, _ = load_model_and_tokenizer(str(tiny_model_dir))
    merged, tok = load_model_and_tokenizer(str(run / "model"))
    changed, total = changed_params(base.state_dict(), merged)
    assert changed == 2 * 2, "q_proj and v_proj of both layers change, nothing else"
    assert json.loads((run / "model/adapter_config.json").read_text())["base_model_name_or_path"] == str(
        Path(tiny_model_dir).resolve()
    )
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 2 and all(isinstance(s["answer"], str) for s in samples)


def test_full_finetune_changes_every_weight(tiny_model_dir, tmp_path):
    run = run_tiny(tiny_model_dir, tmp_path, "--finetune", "full", "--max_steps", "4")
    base, _ = load_model_and_tokenizer(str(tiny_model_dir))
    trained, _ = load_model_and_tokenizer(str(run / "model"))
    changed, total = changed_params(base.state_dict(), trained)
    assert changed == total



def test_wandb_offline_run_holds_the_training_loss(tiny_model_dir, tmp_path):
    run = run_tiny(tiny_model_dir, tmp_path, "--max_steps", "3")
    runs = list((run / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    proc = subprocess.run(
        [str(VENV_BIN / "wandb"), "leet", "inspect", "--summary", str(runs[0])],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    loss_lines = [line.split() for line in proc.stdout.splitlines() if line.strip().startswith("train/loss")]
    assert loss_lines and float(loss_lines[0][1]) > 0


def test_early_stopping_ends_the_run_when_validation_stops_improving(tiny_model_dir, tmp_path):
    run = run_tiny(
        tiny_model_dir, tmp_path, "--max_steps", "40", "--eval_steps", "2", "--save_steps", "2",
        "--early_stopping_patience", "1", "--early_stopping_threshold", "100",
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 4, "first eval sets the best, the second fails the threshold"



def test_packing_trains_on_packed_sequences(tiny_model_dir, tmp_path):
    run = run_tiny(tiny_model_dir, tmp_path, "--packing", "true", "--max_steps", "2", "--eval_steps", "2",
                   "--save_steps", "2", "--max_length", "256")
    losses = [m["loss"] for m in read_metrics(run) if "loss" in m]
    assert losses and all(loss > 0 for loss in losses)
    assert (run / "model/adapter_model.safetensors").is_file()


def test_deepspeed_configs_are_valid(repo):
    stages = {p.stem: json.loads(p.read_text())["zero_optimization"] for p in (repo / "configs/deepspeed").glob("*.json")}
    assert stages["zero2"]["stage"] == 2 and stages["zero3"]["stage"] == 3
    assert stages["zero3_offload"]["offload_optimizer"]["device"] == "cpu"
    assert stages["zero3_offload"]["offload_param"]["device"] == "cpu"
