"""Human evaluation end to end: an evaluation's replies become blind comparison tasks in a real
annotation server (SQLite), two annotators label them over the app's API, and the labels come
back as win-rates with intervals and agreement."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from annotation_ui.store import Store
from evaluation.__main__ import main

from helpers.annotation import call, login, seed, start, stop, task
from helpers.stages import REPO, free_port

pytestmark = pytest.mark.slow
TINY = str(REPO / "configs/evaluation/tiny.yaml")
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def cli(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "evaluation.human", *args], cwd=REPO, capture_output=True, text=True,
                          env=ENV)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_blind_tasks_out_labels_in_win_rates_back(tiny_model_dir, other_tiny_model_dir, tmp_path):
    main(["--config", TINY, "--output_root", str(tmp_path), "--policies",
          f"[{{name: base, model: {tiny_model_dir}}}, {{name: other, model: {other_tiny_model_dir}}}]"])
    run = tmp_path / "tiny"
    db = str(tmp_path / "labels.db")
    seed(db, ["alice", "bob"], ["lead"], [task(1, k=2), task(2, k=2)])  # ordinary labelling work beside it
    out = cli("tasks", "--run", str(run), "--db", db)
    assert "8 comparison tasks" in out.stdout
    eval_id = json.loads((run / "eval.json").read_text())["eval_id"]
    stored = [t for t in Store(db).tasks() if t.batch == f"eval:{eval_id}"]
    assert len(stored) == 8 and all(t.model_ids == ["base", "other"] for t in stored)

    # which policy wrote a reply: only the tasks file (server side) knows; the annotators do not
    writer = {}
    for line in (run / "human_tasks.jsonl").read_text().splitlines():
        row = json.loads(line)
        for policy, reply in zip(row["model_ids"], row["responses"]):
            writer[(row["prompt"][-1]["content"], reply)] = policy

    port = free_port()
    proc = start(db, port, tmp_path, "--overlap", "2")
    try:
        url = f"http://127.0.0.1:{port}"
        for name in ("alice", "bob"):
            client = login(url, name)
            while (t := call(client, "next_task")) is not None:
                assert "model_ids" not in t and "order" not in t
                who = [writer.get((t["prompt"][-1]["content"], r)) for r in t["responses"]]
                if None in who:  # an ordinary task
                    ranks = [1, 2]
                elif name == "alice":  # alice always prefers "other"
                    ranks = [1 if w == "other" else 2 for w in who]
                elif t["domain"] == "code":  # bob prefers "base" on code, and cannot tell them apart elsewhere
                    ranks = [1 if w == "base" else 2 for w in who]
                else:
                    ranks = [1, 1]
                call(client, "submit", t["task_id"], ranks, t["request_id"], None)
    finally:
        stop(proc)

    report = cli("report", "--run", str(run), "--db", db)
    human = json.loads((run / "human.json").read_text())
    assert human["labels"] == 16 and human["tasks"] == 8 and human["annotators"] == ["alice", "bob"]
    # per prompt: code (alice 1, bob 0) → ½; general (alice 1, bob ½) → ¾; four prompts each
    wr = human["comparisons"]["other"]["win_rate"]
    assert wr["mean"] == pytest.approx(0.625) and wr["n"] == 8 and wr["low"] <= 0.625 <= wr["high"]
    by_domain = human["comparisons"]["other"]["by_domain"]
    assert by_domain["code"]["mean"] == pytest.approx(0.5) and by_domain["general"]["mean"] == pytest.approx(0.75)
    assert set(human["agreement"]) >= {"krippendorff_alpha", "fleiss_kappa", "cohen_kappa_mean"}
    assert "people prefer it in 62%" in report.stdout

    # the evaluation's held-out prompts stay out of the ordinary export (training data)
    export = tmp_path / "export"
    subprocess.run([sys.executable, "-m", "annotation_ui", "--db", db, "export", str(export)], cwd=REPO, env=ENV,
                   check=True, capture_output=True)
    rankings = [json.loads(line) for line in (export / "rankings.jsonl").read_text().splitlines()]
    assert len(rankings) == 4 and all(r["batch"] is None for r in rankings)


def test_an_evaluation_can_load_its_tasks_itself(tiny_model_dir, other_tiny_model_dir, tmp_path):
    db = str(tmp_path / "labels.db")
    main(["--config", TINY, "--output_root", str(tmp_path), "--to_annotation", db, "--max_prompts", "3", "--policies",
          f"[{{name: base, model: {tiny_model_dir}}}, {{name: other, model: {other_tiny_model_dir}}}]"])
    report = json.loads((tmp_path / "tiny/eval.json").read_text())
    assert report["human_tasks"]["tasks"] == 3 and report["human_tasks"]["batch"] == f"eval:{report['eval_id']}"
    assert [t.batch for t in Store(db).tasks()] == [report["human_tasks"]["batch"]] * 3
    # no labels yet: one clear line
    proc = subprocess.run([sys.executable, "-m", "evaluation.human", "report", "--run", str(tmp_path / "tiny"),
                           "--db", db], cwd=REPO, capture_output=True, text=True, env=ENV)
    assert proc.returncode == 2 and "no finished labels yet" in proc.stderr


def test_an_older_database_is_upgraded_in_place(tmp_path):
    import sqlite3

    db = tmp_path / "v1.db"
    Store(str(db))
    con = sqlite3.connect(db)  # make it look like a version-1 database: no batch or priority column
    con.executescript("DROP INDEX ix_tasks_batch; ALTER TABLE tasks DROP COLUMN batch; "
                      "ALTER TABLE tasks DROP COLUMN priority; UPDATE meta SET value = '1' WHERE key = 'schema_version';")
    con.close()
    store = Store(str(db))
    store.add_tasks([task(1)], batch="round-1")
    assert [(t.batch, t.priority) for t in store.tasks()] == [("round-1", 0.0)]
