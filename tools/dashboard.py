"""make dashboard  (= python -m tools.dashboard): every run under runs/ in a local browser dashboard.

The dashboard is trackio's (Hugging Face's local-first tracker: a SQLite store and a web
dashboard, no account, nothing leaves the machine). Every stage writes `<run>/metrics.jsonl`
whatever its trackers, so that file is the source: each run folder's rows are copied into the
trackio project `runs` (`runs/trackio/runs.db`) as the trackio run `<stage>/<run name>` — reward
per domain and component, KL, entropy, losses, the reward model's accuracy, the evaluation stage's
win-rates — then trackio's dashboard serves them, several runs on one chart. New rows are copied
every few seconds while it runs (a run still training grows on screen); a run that was resumed
(its file cut back) is copied afresh. Runs logged live with `trackers: [trackio]` are in their own
project (the recipe's `project`, `rlhfkit` by default) in the same store: pick it in the dashboard.

    make dashboard                                    # http://127.0.0.1:7870
    python -m tools.dashboard --port 7871 --no_browser
    python -m tools.dashboard --sync_only            # copy, do not serve
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger(__name__)

PROJECT = "runs"
STATE_FILE = ".dashboard-imported.json"
SKIP = {"checkpoints", "wandb", "tensorboard", "trackio", "model", "model.tmp", "annotation"}
RESERVED = {"step", "time", "epoch"}


def find_runs(root: Path) -> list[Path]:
    """Run folders under `root` that hold a metrics.jsonl (checkpoints and tracker folders skipped)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP and not d.startswith("."))
        if "metrics.jsonl" in filenames:
            out.append(Path(dirpath))
    return out


def read_rows(path: Path) -> list[dict]:
    """The rows of a metrics.jsonl; a line cut short by a crash (the last one) is skipped."""
    rows = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _numbers(row: dict) -> dict[str, float]:
    return {k: float(v) for k, v in row.items()
            if k not in RESERVED and isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}


def _timestamp(row: dict, fallback: float) -> str:
    t = row.get("time") if isinstance(row.get("time"), (int, float)) else fallback
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def _config(run_dir: Path) -> dict:
    import yaml

    path = run_dir / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except yaml.YAMLError:
        config = {}
    provenance = run_dir / "provenance.json"
    git = {}
    if provenance.is_file():
        with contextlib.suppress(json.JSONDecodeError):
            git = json.loads(provenance.read_text()).get("git") or {}
    return {**(config or {}), "git_commit": git.get("commit"), "git_dirty": git.get("dirty"), "run_dir": str(run_dir)}


def sync(root: Path, project: str = PROJECT) -> dict[str, int]:
    """Copy new metrics.jsonl rows of every run under `root` into trackio's store; returns
    {trackio run name: rows copied now}."""
    from trackio.sqlite_storage import SQLiteStorage

    state_path = Path(os.environ["TRACKIO_DIR"]) / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    copied: dict[str, int] = {}
    for run_dir in find_runs(root):
        name = run_dir.relative_to(root).as_posix()
        path = run_dir / "metrics.jsonl"
        stat = path.stat()
        seen = state.get(name, {})
        if seen.get("size") == stat.st_size and seen.get("mtime") == stat.st_mtime_ns:
            continue
        rows = [r for r in read_rows(path) if isinstance(r.get("step"), (int, float))]
        done = seen.get("rows", 0)
        if len(rows) < done or stat.st_size < seen.get("size", 0):  # cut back on resume: copy afresh
            SQLiteStorage.delete_run(project, name)
            done = 0
        new = rows[done:]
        if new:
            metrics = [_numbers(r) for r in new]
            keep = [i for i, m in enumerate(metrics) if m]
            if keep:
                SQLiteStorage.bulk_log(project, name, [metrics[i] for i in keep],
                                       steps=[int(new[i]["step"]) for i in keep],
                                       timestamps=[_timestamp(new[i], stat.st_mtime) for i in keep],
                                       config=_config(run_dir) if done == 0 else None)
            copied[name] = len(keep)
        state[name] = {"rows": len(rows), "size": stat.st_size, "mtime": stat.st_mtime_ns}
    state_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = state_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(state_path)
    return copied


def _keep_syncing(root: Path, project: str, every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        try:
            sync(root, project)
        except Exception as e:  # noqa: BLE001 — a failed copy is retried; the dashboard stays up
            log.warning("dashboard: copying new rows failed (%s); retrying in %.0f s", e, every)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.dashboard", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs", help="folder of run folders (default: runs)")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=7870, help="port (default 7870; the annotation app has 7860)")
    ap.add_argument("--project", default=PROJECT, help="trackio project the runs are copied into")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between copies of new rows")
    ap.add_argument("--no_browser", action="store_true", help="do not open a browser")
    ap.add_argument("--sync_only", action="store_true", help="copy the runs into trackio's store and exit")
    args = ap.parse_args(argv)
    root = Path(args.runs).resolve()
    if not root.is_dir():
        print(f"dashboard: --runs {args.runs}: no such folder (run a stage first: make sft)", file=sys.stderr)
        return 2
    if not 0 < args.port < 65536:
        print(f"dashboard: --port must be 1–65535, got {args.port}", file=sys.stderr)
        return 2
    os.environ.setdefault("TRACKIO_DIR", str(root / "trackio"))  # before trackio is imported: it reads it once
    copied = sync(root, args.project)
    runs = len(find_runs(root))
    print(f"dashboard: {runs} run(s) under {root} ({sum(copied.values())} new rows) in trackio project "
          f"'{args.project}' at {os.environ['TRACKIO_DIR']}")
    if args.sync_only:
        return 0
    import trackio

    stop = threading.Event()
    threading.Thread(target=_keep_syncing, args=(root, args.project, args.every, stop), daemon=True).start()
    print(f"dashboard: http://{args.host}:{args.port}/ (Ctrl-C stops it)", flush=True)
    try:
        trackio.show(project=args.project, host=args.host, server_port=args.port, open_browser=not args.no_browser,
                     block_thread=False, mcp_server=False)
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
