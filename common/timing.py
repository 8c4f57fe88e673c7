"""Where a stage's time went: wall seconds per phase, written as `<run>/timing.json` when the stage ends,
and the table of a whole chain (`python -m common.pipeline timing`, printed at the end of `make ppo`).

One clock per process (`CLOCK`): `common.stage.start` resets it and names the run folder; the stage
adds its phases — `with CLOCK.phase("train"):` around a block, or `CLOCK.add("rollout", seconds)` for
time measured elsewhere (PPO's per-step figures); `run_stage` writes the file on rank 0 after a run
that returned normally. What no phase claims (imports done, models and data loading, set-up) is
reported as `other`, so the phases always add up to the total.

    {"stage": "ppo", "run": "runs/ppo/default", "total_seconds": 902.4, "finished_at": "2026-12-06T08:01:13",
     "peak_rss_gb": 3.9, "phases": {"rollout": 301.2, "score": 170.9, "update": 385.0, "save": 6.1, "other": 39.2}}
"""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime
from pathlib import Path

TIMING_FILE = "timing.json"


class Clock:
    def __init__(self) -> None:
        self.reset()

    def reset(self, stage: str | None = None) -> None:
        self.stage, self.run_dir = stage, None
        self.started = time.perf_counter()
        self.phases: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.phases[name] = self.phases.get(name, 0.0) + float(seconds)

    @contextlib.contextmanager
    def phase(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - start)

    def record(self) -> dict:
        total = time.perf_counter() - self.started
        phases = dict(self.phases)
        phases["other"] = max(0.0, total - sum(phases.values()))
        from common.planning.measure import peak_memory_gb  # the host peak RSS (no device); imports torch

        return {"stage": self.stage, "run": str(self.run_dir) if self.run_dir else None, "total_seconds": round(total, 2),
                "finished_at": datetime.now().isoformat(timespec="seconds"), "peak_rss_gb": round(peak_memory_gb(), 2),
                "phases": {k: round(v, 2) for k, v in phases.items()}}

    def write(self) -> Path | None:
        """`<run>/timing.json` (atomically), when a stage named its run folder and the folder exists."""
        if self.run_dir is None or not Path(self.run_dir).is_dir():
            return None
        path = Path(self.run_dir) / TIMING_FILE
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.record(), indent=2))
        tmp.replace(path)
        return path


CLOCK = Clock()


def read_timing(run_dir: str | Path) -> dict | None:
    path = Path(run_dir) / TIMING_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def duration(seconds: float) -> str:
    """1h 02m, 4m 58s, 12s."""
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds}s"


def timing_table(runs: list[tuple[str, str | Path]]) -> str:
    """The table of (label, run folder) pairs: each stage's total and its phases, largest first, with
    each phase's share of the stage; a run without timing.json is shown as such."""
    lines, total = ["where the time went (each run's timing.json):"], 0.0
    width = max(len(label) for label, _ in runs)
    for label, folder in runs:
        record = read_timing(folder)
        if record is None:
            lines.append(f"  {label:<{width}}  {'—':>8}  (no {TIMING_FILE} in {folder})")
            continue
        seconds = record["total_seconds"]
        total += seconds
        parts = sorted(record["phases"].items(), key=lambda kv: -kv[1])
        shown = " · ".join(f"{name} {duration(s)} ({100 * s / seconds:.0f}%)" for name, s in parts if s >= 0.5) if seconds else ""
        peak = f", peak {record['peak_rss_gb']:.1f} GiB" if "peak_rss_gb" in record else ""  # older files lack it
        lines.append(f"  {label:<{width}}  {duration(seconds):>8}  {shown}   [{record['finished_at']}{peak}]")
    lines.append(f"  {'all':<{width}}  {duration(total):>8}")
    return "\n".join(lines)
