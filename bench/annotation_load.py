"""Load test of the annotation server: N simulated annotators submitting at once for D seconds.

    python bench/annotation_load.py [--annotators 50] [--seconds 60] [--think 2.0] [--saturation 20]

A fresh SQLite database (or --db URL) gets the annotators and enough tasks; the real server
(`python -m annotation_ui serve`) runs as its own process; every annotator logs in (not timed),
makes one untimed call (Gradio builds its per-session state then), then loops:
next_task → think → submit, over HTTP with its session cookie (the API that
`gradio_client` uses too). "think" is the pause before each submit, uniform in [0.5, 1.5] ×
--think seconds: people need tens of seconds to rank K responses, so 2 s is a harsh pace
(50 annotators ≈ 25 submits/s). --saturation S adds a closed-loop run with no pause at all, to
show the server's ceiling. Afterwards the database is read back: every acknowledged label must
be there exactly once ("lost" and "duplicated" must be 0).

Prints submits/s, p50/p99 latency of submit and next_task, errors, lost, duplicated.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PASSWORD = "bench-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db: str, port: int, folder: Path) -> subprocess.Popen:
    log = open(folder / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "annotation_ui", "--db", db, "serve", "--port", str(port),
                             "--overlap", "3", "--export_dir", str(folder / "exports")], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    for _ in range(300):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"server did not start: see {folder / 'server.log'}")


class Annotator:
    def __init__(self, url: str, name: str):
        self.http = httpx.Client(base_url=url, timeout=60)
        self.http.post("/login", data={"username": name, "password": PASSWORD}).raise_for_status()
        self.session = uuid.uuid4().hex
        self.rng = random.Random(name)
        self.call("progress")  # Gradio builds this session's state on its first call: done before timing

    def call(self, endpoint: str, *data):
        r = self.http.post(f"/gradio_api/run/{endpoint}", json={"data": list(data), "session_hash": self.session})
        body = r.json()
        if r.status_code != 200 or "error" in body:
            raise RuntimeError(body.get("error") or r.text)
        return body["data"][0]


def run(annotators: list[Annotator], seconds: float, think: float) -> dict:
    submit_lat, next_lat, acks, errors = [], [], [], []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def work(a: Annotator) -> None:
        if think > 0:  # annotators don't start in lock-step: spread the first hand-outs
            time.sleep(a.rng.uniform(0, think))
        while time.perf_counter() < stop_at:
            try:
                t0 = time.perf_counter()
                task = a.call("next_task")
                t1 = time.perf_counter()
                if task is None:
                    return
                if think > 0:
                    time.sleep(think * a.rng.uniform(0.5, 1.5))
                if time.perf_counter() >= stop_at:
                    return
                ranks = [a.rng.randint(1, task["k"]) for _ in range(task["k"])]
                t2 = time.perf_counter()
                a.call("submit", task["task_id"], ranks, task["request_id"], None)
                t3 = time.perf_counter()
                with lock:
                    next_lat.append(t1 - t0)
                    submit_lat.append(t3 - t2)
                    acks.append(task["request_id"])
            except Exception as err:  # counted and shown; the run goes on
                with lock:
                    errors.append(repr(err)[:200])

    threads = [threading.Thread(target=work, args=(a,)) for a in annotators]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    return {"wall": wall, "submit": submit_lat, "next": next_lat, "acks": acks, "errors": errors}


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


def report(name: str, res: dict, stored: list[str]) -> None:
    acked = set(res["acks"])
    lost = len(acked - set(stored))
    dup = len(stored) - len(set(stored))
    print(f"\n{name}")
    print(f"  submits/s            {len(res['acks']) / res['wall']:8.1f}   ({len(res['acks'])} in {res['wall']:.1f} s)")
    print(f"  submit latency  p50  {pct(res['submit'], .5):8.1f} ms   p99 {pct(res['submit'], .99):8.1f} ms"
          f"   max {pct(res['submit'], 1):8.1f} ms")
    print(f"  next_task       p50  {pct(res['next'], .5):8.1f} ms   p99 {pct(res['next'], .99):8.1f} ms")
    print(f"  errors {len(res['errors'])}   labels lost {lost}   duplicated {dup}")
    if res["errors"]:
        print("  first error:", res["errors"][0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--annotators", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--think", type=float, default=2.0, help="mean seconds before each submit (0 = none)")
    ap.add_argument("--saturation", type=float, default=20, help="seconds of a closed-loop run afterwards (0 = skip)")
    ap.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file)")
    args = ap.parse_args()

    from annotation_ui.store import Store

    folder = Path(tempfile.mkdtemp(prefix="rlhfkit-annotation-bench-"))
    db = args.db or str(folder / "labels.db")
    store = Store(db)
    names = [f"ann{i:03d}" for i in range(args.annotators)]
    for n in names:
        store.add_user(n, PASSWORD)
    n_tasks = int(args.annotators * (args.seconds + args.saturation) * 3)  # never runs out
    store.add_tasks([{"prompt": [{"role": "user", "content": f"question {i}"}],
                      "responses": [f"answer {i}.{j} " * 20 for j in range(3)], "domain": "general",
                      "source": f"bench:{i}"} for i in range(n_tasks)])
    port = free_port()
    proc = start_server(db, port, folder)
    try:
        url = f"http://127.0.0.1:{port}"
        annotators = [Annotator(url, n) for n in names]
        print(f"{args.annotators} annotators logged in; server pid {proc.pid}; database {db}; "
              f"{os.cpu_count()} CPUs shared by server and clients")
        paced = run(annotators, args.seconds, args.think)
        stored = [lab.request_id for lab in store.labels(latest_only=False)]
        report(f"paced: think ≈ {args.think:g} s per task, {args.seconds:g} s", paced, stored)
        if args.saturation > 0:
            closed = run(annotators, args.saturation, 0.0)
            stored = [lab.request_id for lab in store.labels(latest_only=False)]
            report(f"saturation: no pause, {args.saturation:g} s (the server's ceiling)", closed, stored)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if not args.db:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
