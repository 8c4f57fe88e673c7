"""`<run>/metrics.jsonl`: every logged metric, one JSON object per line (rank 0), whatever the trackers."""

from __future__ import annotations

import json
from pathlib import Path

METRICS_FILE = "metrics.jsonl"


def append_metrics(run_dir: Path, record: dict) -> None:
    with (Path(run_dir) / METRICS_FILE).open("a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_metrics(run_dir: str | Path, last_step: int) -> None:
    """On resume from step `last_step`, forget rows logged after it (they will be logged again)."""
    path = Path(run_dir) / METRICS_FILE
    if path.is_file():
        kept = [row for row in read_metrics(run_dir) if row["step"] <= last_step]
        path.write_text("".join(json.dumps(row) + "\n" for row in kept))


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
