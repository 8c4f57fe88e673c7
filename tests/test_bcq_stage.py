"""`python -m bcq_offline` end to end on the tiny recipe: outputs, evaluation, bad rows, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bcq_offline.__main__ import main
from bcq_offline.data import read_logged
from bcq_offline.decode import constrained_generate
from bcq_offline.saving import load_bcq
from common.data import DataError
from common.tracking import read_metrics

from helpers.stages import REPO

TINY = str(REPO / "configs/bcq_offline/tiny.yaml")
DATA = f"[{{path: {REPO}/data/samples/logged_responses.jsonl}}]"


def args(model_dir, out: Path, *extra: str) -> list[str]:
    return ["--config", TINY, "--model", str(model_dir), "--output_root", str(out), "--data", DATA, *extra]


def test_tiny_run_logs_saves_and_evaluates(tiny_model_dir, tiny_reward_model, tmp_path):
    main(args(tiny_model_dir, tmp_path, "--reward_model", str(tiny_reward_model)))
    run = tmp_path / "tiny"
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert {"loss/td", "q/taken", "q/target", "constraint/allowed_tokens"} <= set(rows[-1])
    report = json.loads((run / "eval.json").read_text())
    assert report["prompts"] >= 1 and report["tau_sweep"][0]["tau"] == 0.3
    assert "mean" in report["tau_sweep"][0]["minus_behaviour"]
    for who in ("bcq", "behaviour", "logged"):
        assert "mean" in report["mixed_reward"][who]
    assert report["allowed_tokens"] >= 1
    wr = report["win_rate_vs_behaviour"]  # the evaluation stage's statistics
    assert 0 <= wr["low"] <= wr["mean"] <= wr["high"] <= 1 and "mean" in report["lc_win_rate_vs_behaviour"]
    model, tok, meta = load_bcq(run / "model")
    assert meta["q_trunk"] == "shared" and meta["tau"] == 0.3
    out = constrained_generate(model, tok, [[{"role": "user", "content": "hi"}]], 0.3, max_new_tokens=4)
    assert len(out[0].tokens) >= 1


def test_a_state_cache_over_its_budget_is_not_built(tiny_model_dir, tmp_path, caplog):
    main(args(tiny_model_dir, tmp_path, "--cache_max_gb", "0"))
    assert "state cache" in caplog.text and "not built" in caplog.text
    assert [r["step"] for r in read_metrics(tmp_path / "tiny")] == [1, 2, 3, 4, 5, 6]  # trained through the trunk


def test_generate_cli_answers_from_a_saved_model(tiny_model_dir, tmp_path):
    main(args(tiny_model_dir, tmp_path, "--steps", "2"))
    proc = subprocess.run(
        [sys.executable, "-m", "bcq_offline.generate", "--model", str(tmp_path / "tiny/model"), "--tau", "0.5",
         "--max_new_tokens", "4", "--prompt", "Say hello.", "--prompt", "你好"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    answers = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [a["prompt"] for a in answers] == ["Say hello.", "你好"] and all("response" in a for a in answers)


def test_bad_rows_name_file_and_line(tmp_path):
    bad = tmp_path / "logged.jsonl"
    bad.write_text('{"prompt": "hi", "response": "hello", "reward": 1}\n{"prompt": "hi", "response": "x", "reward": "high"}\n')
    with pytest.raises(DataError, match=r"logged\.jsonl:2: 'reward' must be a finite number"):
        read_logged(str(bad))


def test_rank_and_score_mappings(tmp_path):
    f = tmp_path / "prefs.jsonl"
    f.write_text(json.dumps({"prompt": "q", "responses": ["a", "b", "c"], "ranks": [2, 1, 3]}) + "\n"
                 + json.dumps({"prompt": "q2", "chosen": "good", "rejected": "bad"}) + "\n"
                 + json.dumps({"prompt": "q3", "response": "r", "score": 0.25, "step": 3}) + "\n")
    records, skipped = read_logged(str(f))
    assert [(r.response, r.reward) for r in records] == [
        ("a", 0.0), ("b", 1.0), ("c", -1.0), ("good", 1.0), ("bad", -1.0), ("r", 0.25)]
    assert skipped == 0



def test_behaviour_cloning_makes_g_part_of_the_saved_model(tiny_model_dir, tmp_path):
    main(args(tiny_model_dir, tmp_path, "--steps", "2", "--behaviour_steps", "6", "--behaviour_lr", "1e-2"))
    run = tmp_path / "tiny"
    nll = json.loads((run / "behaviour.json").read_text())["response_nll"]
    assert len(nll) == 6 and nll[-1] < nll[0]
    meta = json.loads((run / "model/bcq_config.json").read_text())
    assert meta["base"] == str((run / "behaviour_model").resolve())
    model, _, _ = load_bcq(run / "model")  # G rebuilt from the cloned weights
    assert model.q_head.weight.shape[0] == model.lm.get_output_embeddings().weight.shape[0]


def test_rewards_recomputed_with_the_domain_mixer():
    from bcq_offline.data import LoggedResponse
    from bcq_offline.run import recompute_rewards
    from common.models import load_tokenizer
    from common.rewards.mixer import load_domains

    prompt = [{"role": "user", "content": "q"}]
    records = [LoggedResponse(prompt, "good answer here", 1.0), LoggedResponse(prompt, "bad answer here", -1.0),
               LoggedResponse(prompt, "bad answer here", -1.0)]
    recompute_rewards(records, "mixer", None, load_domains(REPO / "configs/domains"), load_tokenizer("tiny-random"))
    rewards = [r.reward for r in records]
    # same lengths and diversity: the accuracy component (the logged reward) decides, at weight 0.6
    assert rewards[0] > rewards[1] == rewards[2]
    assert rewards[0] - rewards[1] == pytest.approx(0.6 * (2 / 0.9428), rel=1e-3)  # z-scores of (1, −1, −1)
