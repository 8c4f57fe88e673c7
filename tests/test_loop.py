"""The closed loop end to end on tiny models: two rounds through the real annotation server and
its API, simulated annotators answering from a fixed rule (the shorter reply is better)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from annotation_ui.store import Store

from helpers.annotation import call, login, seed, start, stop
from helpers.stages import REPO, free_port

pytestmark = pytest.mark.slow
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}


def loop(base: list[str], n: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loop", *base, "--round", str(n)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=1200)


def label_everything(url: str, names: list[str]) -> list[tuple[str, int]]:
    """Each simulated annotator takes tasks until none is left and ranks the shorter reply higher.
    Returns (annotator, task id) in the order the tasks were handed out."""
    order = []
    for name in names:
        client = login(url, name)
        while (task := call(client, "next_task")) is not None:
            lengths = [len(r) for r in task["responses"]]
            distinct = sorted(set(lengths))
            ranks = [distinct.index(x) + 1 for x in lengths]  # 1 = shortest; equal lengths tie
            call(client, "submit", task["task_id"], ranks, task["request_id"], None)
            order.append((name, task["task_id"]))
    return order


def test_two_rounds_of_the_closed_loop(tiny_model_dir, tiny_reward_model, tmp_path):
    db = str(tmp_path / "labels.db")
    seed(db, ["alice", "bob"], ["root"], [])
    base = ["--config", "configs/loop/tiny.yaml", "--root", str(tmp_path / "loop"), "--db", db,
            "--policy", str(tiny_model_dir), "--reward_model", str(tiny_reward_model)]

    proc = loop(base, 1)  # nothing chosen yet: one clear line, nothing written
    assert proc.returncode == 2 and "round 1 has no tasks" in proc.stderr and "make loop ROUND=0" in proc.stderr
    assert not (tmp_path / "loop" / "round-1" / "labels").exists()

    proc = loop(base, 0)
    assert proc.returncode == 0, proc.stderr[-3000:]
    round1 = [t for t in Store(db).tasks() if t.batch == "round-1"]
    assert len(round1) == 4 and all(len(t.responses) == 3 for t in round1)

    proc = loop(base, 1)  # chosen but not labelled yet
    assert proc.returncode == 2 and "round 1 has no labels yet: its 4 tasks wait" in proc.stderr

    port = free_port()
    server = start(db, port, tmp_path, "--overlap", "2")
    url = f"http://127.0.0.1:{port}"
    try:
        order = label_everything(url, ["alice", "bob"])
        by_priority = sorted(round1, key=lambda t: (-t.priority, t.id))
        assert [tid for who, tid in order if who == "alice"] == [t.id for t in by_priority]  # most uncertain first

        proc = loop(base, 1)
        assert proc.returncode == 0, proc.stderr[-3000:]
        r1 = tmp_path / "loop" / "round-1"
        for step in ("labels", "reward", "policy", "eval", "tasks"):
            assert (r1 / f"{step}.done").is_file(), step
        assert (r1 / "reward" / "model").is_dir() and (r1 / "policy" / "model").is_dir()
        report = json.loads((r1 / "eval" / "eval.json").read_text())
        assert report["baseline"] == "previous" and "win_rate" in report["comparisons"]["new"]
        assert "new policy vs previous" in proc.stdout
        round2 = [t for t in Store(db).tasks() if t.batch == "round-2"]
        assert len(round2) == 4 and {t.model_ids[0] for t in round2} == {str(r1 / "policy" / "model")}

        order2 = label_everything(url, ["alice", "bob"])
        assert {tid for _, tid in order2} == {t.id for t in round2}
    finally:
        stop(server)

    proc = loop(base, 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r2 = tmp_path / "loop" / "round-2"
    rankings = (r2 / "labels" / "rankings.jsonl").read_text().splitlines()
    assert len(rankings) == 2 * (4 + 4)  # both rounds' labels, two annotators each
    assert {json.loads(r)["batch"] for r in rankings} == {"round-1", "round-2"}
    config = (r2 / "reward" / "config.yaml").read_text()
    assert f"model: {r1 / 'reward' / 'model'}" in config and "val_split: hash" in config  # warm start, stable split
    assert len([t for t in Store(db).tasks() if t.batch == "round-3"]) == 4

    (r2 / "tasks.done").unlink()  # a round stopped before its last step: running it again finishes it
    proc = loop(base, 2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len([t for t in Store(db).tasks() if t.batch == "round-3"]) == 4  # not chosen twice


def test_a_round_with_bad_inputs_is_one_line_and_writes_nothing(tiny_model_dir, tiny_reward_model, tmp_path):
    db = str(tmp_path / "labels.db")
    seed(db, ["alice"], [], [])
    base = ["--config", "configs/loop/tiny.yaml", "--root", str(tmp_path / "loop"), "--db", db,
            "--policy", str(tiny_model_dir), "--reward_model", str(tiny_reward_model)]
    cases = {
        "larger than the candidate pool": ["--budget", "13"],  # general + code: 12 prompts
        "not a reward model": ["--reward_model", str(tiny_model_dir)],
        "policy /nonexistent/model": ["--policy", "/nonexistent/model"],
        "prompts: data/prompts/missing.jsonl not found": ["--prompts", "[data/prompts/missing.jsonl]"],
        "round must be given": [],
    }
    for message, extra in cases.items():
        argv = [sys.executable, "-m", "loop", *base, *extra] + ([] if message == "round must be given" else ["--round", "0"])
        proc = subprocess.run(argv, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and message in proc.stderr, (message, proc.stderr[-2000:])
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "loop").exists() and Store(db).tasks() == []
    proc = loop(base, 2)  # round 1 never ran
    assert proc.returncode == 2 and "run `make loop ROUND=1` first" in proc.stderr


def test_round_0_on_a_fresh_clone_creates_the_annotation_database(tiny_model_dir, tiny_reward_model, tmp_path):
    """`make loop ROUND=0` right after `make ppo`: nothing has made runs/annotation/ yet."""
    runs = tmp_path / "runs"
    runs.mkdir()
    db = runs / "annotation" / "labels.db"
    proc = loop(["--config", "configs/loop/tiny.yaml", "--root", str(runs / "loop"), "--db", str(db),
                 "--policy", str(tiny_model_dir), "--reward_model", str(tiny_reward_model)], 0)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len([t for t in Store(str(db)).tasks() if t.batch == "round-1"]) == 4
