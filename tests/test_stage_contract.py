"""One contract, every stage (common/stage.py starts them all the same way):

- a bad row names its file and line, and nothing is written (no output folder);
- a finished run is never overwritten by accident, and `--overwrite true` starts afresh;
- a run SIGKILLed mid-training resumes from its last checkpoint and logs the same figures as an
  uninterrupted run.

Each stage is described once below (its recipe, its data flag, a bad file, how far to train); the
tests are the same for all.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from common.data import DataError
from common.runs import RunExistsError
from common.tracking import read_metrics

from helpers.stages import REPO, assert_same_metrics, run_killed_at_step

PROMPTS = f"[{{path: {REPO}/data/prompts/general.jsonl}}, {{path: {REPO}/data/prompts/code.jsonl}}]"
PREFERENCES = str(REPO / "data/samples/preferences.jsonl")
BAD_PREFERENCES = ('{"prompt": "q", "chosen": "a", "rejected": "b"}\n{"prompt": "q", "responses": ["a"], "ranks": [1]}\n',
                   r"bad\.jsonl:2: a ranking needs at least 2 responses")
BAD_PROMPTS = ('{"prompt": "hi", "domain": "general"}\n{"prompt": "stars?", "domain": "astrology"}\n',
               r"bad\.jsonl:2: unknown domain 'astrology'")


@dataclass
class Stage:
    module: str
    model_flag: str  # the flag naming the model the stage starts from
    data_flag: str  # the flag naming its data
    data: str  # good data, as the flag's value
    bad: tuple[str, str]  # (a file whose line 2 is bad, the error it must give)
    finished: str = "model"  # what a finished run folder holds
    resume: list[str] = field(default_factory=list)  # training options of the resume test
    kill_at: int = 0  # SIGKILL after this training step (0: the stage does not train)
    own_loop: bool = False  # PPO and BCQ log one metrics row per step; Trainer stages log losses

    @property
    def recipe(self) -> str:
        return str(REPO / f"configs/{self.module}/tiny.yaml")

    def args(self, model_dir, out: Path, *extra: str) -> list[str]:
        return ["--config", self.recipe, self.model_flag, str(model_dir), "--output_root", str(out),
                self.data_flag, self.data, *extra]

    def main(self, argv: list[str]) -> None:
        importlib.import_module(f"{self.module}.__main__").main(argv)


TRAINER_RESUME = ["--max_steps", "12", "--save_steps", "4", "--eval_steps", "12", "--logging_steps", "1"]
STAGES = {
    "sft": Stage("sft", "--model", "--data", f"[{{path: {REPO}/data/samples/sft_chat.jsonl}}]",
                 ('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
                  '{"messages": [{"role": "robot", "content": "q"}]}\n', r"bad\.jsonl:2: .*unknown role 'robot'"),
                 resume=[*TRAINER_RESUME, "--lora.dropout", "0.1", "--learning_rate", "0.01"], kill_at=10),
    "reward_model": Stage("reward_model", "--model", "--data", f"[{{path: {PREFERENCES}}}]", BAD_PREFERENCES,
                          resume=TRAINER_RESUME, kill_at=10),
    "dpo": Stage("dpo", "--model", "--data", f"[{{path: {PREFERENCES}}}]", BAD_PREFERENCES,
                 resume=["--max_steps", "8", "--save_steps", "4", "--eval_steps", "8", "--logging_steps", "1"], kill_at=6),
    "ppo": Stage("ppo", "--policy", "--prompts", PROMPTS, BAD_PROMPTS, kill_at=5, own_loop=True),
    "ppo-grpo": Stage("ppo", "--policy", "--prompts", PROMPTS, BAD_PROMPTS, resume=["--advantage_estimator", "grpo"],
                      kill_at=5, own_loop=True),
    "bcq_offline": Stage("bcq_offline", "--model", "--data", f"[{{path: {REPO}/data/samples/logged_responses.jsonl}}]",
                         ('{"prompt": "hi", "response": "hello", "reward": 1}\n'
                          '{"prompt": "hi", "response": "x", "reward": 1, "domain": "astrology"}\n',
                          r"bad\.jsonl:2: unknown domain 'astrology'"), kill_at=5, own_loop=True),
    "evaluation": Stage("evaluation", "--policies", "--prompts", PROMPTS, BAD_PROMPTS, finished="eval.json"),
}


def model_arg(stage: Stage, tiny_model_dir) -> str:
    if stage.module == "evaluation":  # two policies (the same tiny model twice), no reward-model judge
        return f"[{{name: base, model: {tiny_model_dir}}}, {{name: other, model: {tiny_model_dir}}}]"
    return str(tiny_model_dir)


@pytest.mark.parametrize("name", [n for n in STAGES if n != "ppo-grpo"])
def test_a_bad_row_names_file_and_line_and_nothing_is_written(name, tiny_model_dir, tmp_path):
    stage = STAGES[name]
    text, error = stage.bad
    bad = tmp_path / "bad.jsonl"
    bad.write_text(text)
    out = tmp_path / "out"
    with pytest.raises(DataError, match=error):
        stage.main([*stage.args(model_arg(stage, tiny_model_dir), out), stage.data_flag, f"[{{path: {bad}}}]"])
    assert not out.exists()


@pytest.mark.parametrize("name", [n for n in STAGES if n != "ppo-grpo"])
def test_a_finished_run_is_refused_and_overwrite_starts_afresh(name, tiny_model_dir, tmp_path):
    stage = STAGES[name]
    run = tmp_path / "tiny"
    (run / stage.finished).mkdir(parents=True) if stage.finished == "model" else run.mkdir(parents=True)
    if stage.finished != "model":
        (run / stage.finished).write_text("{}")
    (run / "kept.txt").write_text("a finished run's file")
    argv = stage.args(model_arg(stage, tiny_model_dir), tmp_path)
    with pytest.raises(RunExistsError, match=f"{run} already holds a finished"):
        stage.main(argv)
    assert (run / "kept.txt").read_text() == "a finished run's file", "a refused run touches nothing"
    bad = tmp_path / "bad.jsonl"  # overwrite: the folder goes first, then the bad row stops the run
    bad.write_text(stage.bad[0])
    with pytest.raises(DataError):
        stage.main([*argv, "--overwrite", "true", stage.data_flag, f"[{{path: {bad}}}]"])
    assert not run.exists()


def loss_rows(run: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in read_metrics(run) if "loss" in r]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n, s in STAGES.items() if s.kill_at])
def test_resume_after_sigkill_logs_what_an_uninterrupted_run_logs(name, tiny_model_dir, tmp_path):
    stage = STAGES[name]
    straight = stage.args(tiny_model_dir, tmp_path / "a", *stage.resume)
    stage.main(straight)
    killed = stage.args(tiny_model_dir, tmp_path / "b", *stage.resume)
    run_killed_at_step(stage.module, stage.kill_at, killed)
    run_a, run_b = tmp_path / "a/tiny", tmp_path / "b/tiny"
    assert not (run_b / "model").exists(), "a killed run leaves no final model"
    stage.main(killed)  # resume: auto picks the newest whole checkpoint
    if stage.own_loop:
        steps = len(read_metrics(run_a))
        assert_same_metrics(run_a, run_b, steps, abs_tol=1e-6)
        return
    a, b = loss_rows(run_a), loss_rows(run_b)
    assert [s for s, _ in a] == [s for s, _ in b], "rows logged after the checkpoint and before the kill are not repeated"
    assert [v for _, v in b] == pytest.approx([v for _, v in a], abs=1e-5)
    summary_a, summary_b = (json.loads((r / "summary.json").read_text()) for r in (run_a, run_b))
    assert summary_b["resumed_from"] and not summary_a["resumed_from"]
    if "eval_loss" in summary_a:
        assert summary_b["eval_loss"] == pytest.approx(summary_a["eval_loss"], abs=1e-5)
