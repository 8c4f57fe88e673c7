"""Where the time went: the clock's phases add up to the stage's total, every stage run as a process
writes `<run>/timing.json` with its own phases, and `python -m common.pipeline timing` prints the chain."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from test_stage_contract import STAGES, model_arg

from common.stage import run_stage
from common.timing import CLOCK, TIMING_FILE, Clock, duration, timing_table

from helpers.stages import REPO


def test_phases_and_other_add_up_to_the_total(tmp_path):
    clock = Clock()
    clock.reset("sft")
    with clock.phase("train"):
        time.sleep(0.05)
    clock.add("train", 1.0)  # measured elsewhere
    clock.add("save", 0.25)
    record = clock.record()
    assert record["phases"]["train"] == pytest.approx(1.05, abs=0.02) and record["phases"]["save"] == 0.25
    assert sum(record["phases"].values()) == pytest.approx(max(record["total_seconds"], 1.3), abs=0.2)
    assert 0.01 < record["peak_rss_gb"] < 64  # this test process's own peak, in GiB
    assert clock.write() is None  # no run folder named: nothing written
    clock.run_dir = tmp_path
    assert json.loads(clock.write().read_text())["stage"] == "sft" and not list(tmp_path.glob("*.tmp"))


def test_durations_and_the_table_with_a_missing_run(tmp_path):
    assert [duration(s) for s in (12.4, 298, 3725)] == ["12s", "4m 58s", "1h 02m"]
    run = tmp_path / "ppo/default"
    run.mkdir(parents=True)
    (run / TIMING_FILE).write_text(json.dumps({"stage": "ppo", "total_seconds": 100.0, "finished_at": "2026-12-06T08:00:00",
                                               "peak_rss_gb": 3.94,
                                               "phases": {"rollout": 60.0, "update": 30.0, "other": 10.0}}))
    text = timing_table([("sft", tmp_path / "sft/default"), ("ppo", run)])
    assert "no timing.json in" in text and "rollout 1m 00s (60%) · update 30s (30%) · other 10s (10%)" in text
    assert "[2026-12-06T08:00:00, peak 3.9 GiB]" in text
    assert text.splitlines()[-1].split() == ["all", "1m", "40s"]


@pytest.mark.slow
@pytest.mark.parametrize("name, phases", [
    ("sft", {"train", "evaluate", "save"}),
    ("ppo", {"rollout", "score", "update", "save"}),
    ("bcq_offline", {"train", "save", "evaluate"}),
    ("evaluation", {"sample", "kl_reference"}),
])
def test_a_stage_process_writes_its_phases(name, phases, tiny_model_dir, tmp_path):
    stage = STAGES[name]
    short = {"sft": ["--max_steps", "4"], "ppo": ["--steps", "2", "--save_steps", "2"],
             "bcq_offline": ["--steps", "2", "--save_steps", "2"], "evaluation": []}[name]
    argv = stage.args(model_arg(stage, tiny_model_dir), tmp_path, *short)
    assert run_stage(lambda: stage.main(argv)) == 0
    record = json.loads((tmp_path / "tiny" / TIMING_FILE).read_text())
    assert record["stage"] == name and phases <= set(record["phases"]), record
    assert sum(record["phases"].values()) == pytest.approx(record["total_seconds"], abs=0.5)
    assert all(v >= 0 for v in record["phases"].values())
    CLOCK.reset()
    proc = subprocess.run([sys.executable, "-m", "common.pipeline", "timing", str(tmp_path / "tiny")], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "where the time went" in proc.stdout, proc.stderr
