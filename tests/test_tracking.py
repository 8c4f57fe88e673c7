"""Trackers (W&B, trackio, MLflow, TensorBoard), provenance and the local dashboard.

A tiny SFT run and a tiny PPO run log to all four trackers at once; each tracker's values are read
back through that library's own reader (trackio's SQLite store, MLflow's client, TensorBoard's
event-file reader, `wandb leet`) and compared with the run's metrics.jsonl. Stages run in
subprocesses: trackio reads its store's location once, at import.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from common.tracking import read_metrics

from helpers.stages import REPO, free_port, run_killed_at_step

pytestmark = pytest.mark.slow
VENV_BIN = Path(sys.executable).parent
ALL = "[wandb, trackio, mlflow, tensorboard]"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}


def stage(module: str, recipe: str, root: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", module, "--config", recipe, "--output_root", str(root / module),
                           "--trackers", ALL, *extra], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def trackio_logs(root: Path, project: str, run: str) -> dict:
    """A run's rows and config from trackio's store, read by trackio (in a process of its own)."""
    code = ("import json, sys; from trackio.sqlite_storage import SQLiteStorage as S; "
            "print(json.dumps({'logs': S.get_logs(sys.argv[1], sys.argv[2]), 'config': S.get_run_config(sys.argv[1], "
            "sys.argv[2]), 'runs': S.get_runs(sys.argv[1])}, default=str))")
    proc = subprocess.run([sys.executable, "-c", code, project, run], env={**ENV, "TRACKIO_DIR": str(root / "trackio")},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mlflow_client(root: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def tensorboard_scalars(run: Path) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def wandb_summary(run: Path) -> dict[str, float]:
    (offline,) = (run / "wandb").glob("offline-run-*")
    proc = subprocess.run([str(VENV_BIN / "wandb"), "leet", "inspect", "--summary", str(offline)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = float(parts[1])
            except ValueError:
                pass
    return out


@pytest.fixture(scope="module")
def tracked(tmp_path_factory) -> Path:
    """runs/ with a tiny SFT run and a tiny PPO run, each logged to all four trackers."""
    root = tmp_path_factory.mktemp("tracked") / "runs"
    stage("sft", "configs/sft/tiny.yaml", root)
    stage("ppo", "configs/ppo/tiny.yaml", root)
    return root


def test_ppo_values_read_back_through_every_tracker(tracked):
    run = tracked / "ppo" / "tiny"
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    expected = {r["step"]: r["objective/kl"] for r in rows}

    logs = trackio_logs(tracked, "rlhfkit", "ppo/tiny")
    assert {int(r["step"]): r["objective/kl"] for r in logs["logs"]} == pytest.approx(expected)
    assert logs["config"]["policy_lr"] == pytest.approx(1e-3)
    assert logs["config"]["provenance"]["git"]["commit"]

    client = mlflow_client(tracked)
    rid = (run / "mlflow_id").read_text().strip()
    history = client.get_metric_history(rid, "objective/kl")
    assert {m.step: m.value for m in history} == pytest.approx(expected)
    mlrun = client.get_run(rid)
    assert mlrun.info.run_name == "ppo/tiny" and mlrun.info.status == "FINISHED"
    assert mlrun.data.params["config.policy_lr"] == "0.001"
    assert len(mlrun.data.tags["mlflow.source.git.commit"]) == 40

    scalars = tensorboard_scalars(run)
    assert scalars["objective/kl"] == pytest.approx(expected, rel=1e-5, abs=1e-6)  # event files hold float32

    summary = wandb_summary(run)
    assert summary["objective/kl"] == pytest.approx(rows[-1]["objective/kl"], rel=1e-4, abs=1e-6)


def test_ppo_logs_trl_metric_names(tracked):
    row = read_metrics(tracked / "ppo" / "tiny")[-1]
    trl = {"eps", "objective/kl", "objective/entropy", "objective/non_score_reward", "objective/rlhf_reward",
           "objective/scores", "policy/approxkl_avg", "policy/clipfrac_avg", "loss/policy_avg", "loss/value_avg",
           "val/clipfrac_avg", "policy/entropy_avg", "val/ratio", "val/ratio_var", "val/num_eos_tokens", "lr", "episode"}
    assert trl <= set(row), trl - set(row)
    assert row["objective/rlhf_reward"] == pytest.approx(row["objective/scores"] + row["objective/non_score_reward"])
    assert row["episode"] == 6 * 4 * 2  # steps × prompts_per_step × samples_per_prompt
    documented = (REPO / "docs/tracking.md").read_text()
    assert all(f"`{name}`" in documented for name in trl)


def test_sft_values_read_back_through_every_tracker(tracked):
    run = tracked / "sft" / "tiny"
    losses = {r["step"]: r["loss"] for r in read_metrics(run) if "loss" in r}
    assert losses

    logs = trackio_logs(tracked, "rlhfkit", "sft/tiny")
    # transformers' TrackioCallback lets trackio count its own steps and logs the Trainer's as a metric
    assert {int(r["train/global_step"]): r["train/loss"] for r in logs["logs"] if "train/loss" in r} == pytest.approx(losses)
    assert logs["config"]["rlhfkit"]["max_steps"] == 8  # our resolved config beside the Trainer's arguments

    client = mlflow_client(tracked)
    rid = (run / "mlflow_id").read_text().strip()
    assert {m.step: m.value for m in client.get_metric_history(rid, "loss")} == pytest.approx(losses)
    assert client.get_run(rid).data.params["config.max_steps"] == "8"

    assert tensorboard_scalars(run)["train/loss"] == pytest.approx(losses, rel=1e-5)
    assert wandb_summary(run)["train/loss"] == pytest.approx(losses[max(losses)], rel=1e-4)


def test_provenance_names_commit_config_and_content_hashes(tracked):
    prov = json.loads((tracked / "ppo" / "tiny" / "provenance.json").read_text())
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert prov["git"]["commit"] == head and isinstance(prov["git"]["dirty"], bool)
    assert prov["config"]["policy_lr"] == pytest.approx(1e-3)
    data = prov["inputs"]["prompts[0].path"]
    path = REPO / "data/prompts/general.jsonl"
    assert data["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and data["bytes"] == path.stat().st_size
    assert prov["inputs"]["policy"]["kind"] == "folder" and len(prov["inputs"]["policy"]["sha256"]) == 64

    sft = json.loads((tracked / "sft" / "tiny" / "provenance.json").read_text())
    data = sft["inputs"]["data[0].path"]
    assert data["sha256"] == hashlib.sha256((REPO / "data/samples/sft_chat.jsonl").read_bytes()).hexdigest()


def test_provenance_follows_an_adapter_to_its_base(tmp_path):
    from common.tracking.provenance import describe, provenance

    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    (base / "model.safetensors").write_bytes(b"weights")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}))
    (adapter / "checkpoints").mkdir()
    (adapter / "checkpoints" / "ignored.bin").write_bytes(b"x")
    record = provenance({"policy": str(adapter), "steps": 3, "name": "not a path"}, tmp_path / "run")
    assert set(record["inputs"]) == {"policy", "policy (base)"}
    assert record["inputs"]["policy (base)"]["sha256"] == describe(base)["sha256"]
    assert record["inputs"]["policy"]["files"] == 1  # checkpoints/ left out
    before = describe(base)["sha256"]
    (base / "model.safetensors").write_bytes(b"other weights")
    assert describe(base)["sha256"] != before  # content, not names


def test_resumed_run_continues_the_same_tracker_runs(tmp_path):
    root = tmp_path / "runs"
    args = ["--config", "configs/ppo/tiny.yaml", "--output_root", str(root / "ppo"), "--trackers", ALL]
    run_killed_at_step("ppo", 3, args)
    run = root / "ppo" / "tiny"
    ids = {t: (run / f"{t}_id").read_text() for t in ("wandb", "mlflow")}
    stage("ppo", "configs/ppo/tiny.yaml", root)
    assert {t: (run / f"{t}_id").read_text() for t in ("wandb", "mlflow")} == ids
    expected = {r["step"]: r["objective/scores"] for r in read_metrics(run)}
    assert sorted(expected) == [1, 2, 3, 4, 5, 6]

    client = mlflow_client(root)
    (experiment,) = [e for e in client.search_experiments() if e.name == "rlhfkit"]
    assert [r.info.run_id for r in client.search_runs([experiment.experiment_id])] == [ids["mlflow"]]
    last = {}
    for m in sorted(client.get_metric_history(ids["mlflow"], "objective/scores"), key=lambda m: m.timestamp):
        last[m.step] = m.value  # a step logged again after the resume replaces the first value
    assert last == pytest.approx(expected)

    assert trackio_logs(root, "rlhfkit", "ppo/tiny")["runs"] == ["ppo/tiny"]
    assert tensorboard_scalars(run)["objective/scores"] == pytest.approx(expected, rel=1e-5, abs=1e-6)  # purged


def test_an_unknown_tracker_is_one_line_naming_the_key_and_the_choices(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ppo", "--config", "configs/ppo/tiny.yaml", "--output_root",
                           str(tmp_path), "--trackers", "[wandbb]"], cwd=REPO, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "trackers[0]" in lines[0] and "'trackio'" in lines[0] and "'wandbb'" in lines[0]
    assert not any(tmp_path.iterdir())  # nothing written


# ----------------------------------------------------------------------------- the dashboard


def dashboard(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.dashboard", *args], cwd=REPO, env=env or ENV,
                          capture_output=True, text=True, timeout=300)


def test_dashboard_copies_every_run_and_then_only_new_rows(tmp_path):
    root = tmp_path / "runs"
    for name, n in (("ppo/a", 3), ("sft/b", 2)):
        run = root / name
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in range(1, n + 1)))
    (root / "ppo/a/checkpoints/step-2").mkdir(parents=True)
    (root / "ppo/a/checkpoints/step-2/metrics.jsonl").write_text('{"step": 1, "loss": 9}\n')  # not a run
    env = {**ENV, "TRACKIO_DIR": str(root / "trackio")}
    assert "2 run(s)" in dashboard("--runs", str(root), "--sync_only", env=env).stdout
    assert [r["loss"] for r in trackio_logs(root, "runs", "ppo/a")["logs"]] == pytest.approx([1, 1 / 2, 1 / 3])
    with (root / "ppo/a/metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 4, "loss": 0.25}) + "\n")
    dashboard("--runs", str(root), "--sync_only", env=env)
    assert [r["step"] for r in trackio_logs(root, "runs", "ppo/a")["logs"]] == [1, 2, 3, 4]
    (root / "ppo/a/metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.5}) + "\n")  # resumed: cut back
    dashboard("--runs", str(root), "--sync_only", env=env)
    assert [r["loss"] for r in trackio_logs(root, "runs", "ppo/a")["logs"]] == [0.5]
    assert sorted(trackio_logs(root, "runs", "sft/b")["runs"]) == ["ppo/a", "sft/b"]


def test_dashboard_bad_input_is_one_line(tmp_path):
    proc = dashboard("--runs", str(tmp_path / "missing"), "--sync_only")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "missing" in proc.stderr


def test_dashboard_shows_a_finished_run_in_chromium(tracked, tmp_path):
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {**ENV, "TRACKIO_DIR": str(tmp_path / "trackio")}
    server = subprocess.Popen([sys.executable, "-m", "tools.dashboard", "--runs", str(tracked), "--port", str(port),
                               "--no_browser"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()[-3000:]
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(1)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url, timeout=120_000)
            page.get_by_text("ppo/tiny").first.wait_for(timeout=120_000)  # the run, in the run list
            page.get_by_text("rlhf_reward").first.wait_for(timeout=120_000)  # a chart of its reward
            page.screenshot(path=str(tmp_path / "dashboard.png"))
            browser.close()
        assert (tmp_path / "dashboard.png").stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(timeout=60)
