"""Start the annotation server as a real process and talk to it over HTTP, as annotators would."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "password123"
# A client waits this long for an answer: a stall detector, not a speed target. Twenty annotators
# logging in at once queue for bcrypt on two shared cores; CI machines are shared too.
PATIENCE_S = 300


def seed(db: str, annotators: list[str], admins: list[str], tasks: list[dict]) -> None:
    from annotation_ui.store import Store

    store = Store(db)
    for name in annotators:
        store.add_user(name, PASSWORD, "annotator")
    for name in admins:
        store.add_user(name, PASSWORD, "admin")
    if tasks:
        store.add_tasks(tasks)


def task(i: int, k: int = 3, domain: str = "general", **extra) -> dict:
    return {"prompt": [{"role": "user", "content": f"question {i}"}], "responses": [f"answer {i}.{j}" for j in range(k)],
            "domain": domain, "source": f"t:{i}", **extra}


def start(db: str, port: int, folder: Path, *args: str, log_name: str = "server.log") -> subprocess.Popen:
    """`python -m annotation_ui serve` on 127.0.0.1:port; returns once the login page answers."""
    log = open(folder / log_name, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "annotation_ui", "--db", db, "serve", "--port", str(port),
         "--export_dir", str(folder / "exports"), *args],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"},
    )
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {(folder / log_name).read_text()[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start within 90 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def login(url: str, name: str, password: str = PASSWORD) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=PATIENCE_S)
    r = client.post("/login", data={"username": name, "password": password})
    r.raise_for_status()
    client.session_hash = uuid.uuid4().hex  # Gradio keeps per-session state under it (and skips rebuilding it)
    return client


class ApiError(Exception):
    pass


def call(client: httpx.Client, endpoint: str, *data):
    """POST /gradio_api/run/<endpoint> → the result, or ApiError with the server's message."""
    r = client.post(f"/gradio_api/run/{endpoint}", json={"data": list(data), "session_hash": client.session_hash})
    body = r.json()
    if r.status_code != 200 or "error" in body:
        raise ApiError(body.get("error") or body.get("detail") or r.text)
    return body["data"][0]
