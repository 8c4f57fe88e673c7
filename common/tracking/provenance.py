"""What a run was made from, so a model can be traced back to its labels: `<run>/provenance.json`.

- git: the checkout's commit and whether its tree had uncommitted changes (None outside a checkout);
- config: the resolved config (as in config.yaml);
- inputs: every file or folder the config names that exists on disk — data files (JSONL, SQLite
  label databases, DeepSpeed JSON), model folders (a parent model, a reward model, a LoRA adapter's
  own base, followed) — each with its size and a SHA-256 of its content (a folder: of its files'
  relative paths and hashes, sorted; checkpoints/ and caches left out).

Hashes are of content, as DVC records them, so a file copied elsewhere keeps its hash. Values that
are not paths on this machine (a hub id, a number) are left to the config.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

PROVENANCE_FILE = "provenance.json"
SKIP_DIRS = {"checkpoints", "wandb", "tensorboard", "__pycache__", ".git", "model.tmp"}
CHUNK = 1 << 20


def git_state(cwd: Path | None = None) -> dict | None:
    """{"commit", "dirty"} of the checkout holding `cwd` (default: this code's), None outside one."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=30)
        if commit.returncode != 0:
            return None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def file_hash(path: Path, _memo: dict[tuple, str] = {}) -> str:  # noqa: B006 — a per-process cache
    """SHA-256 of a file's content (remembered per path, size and modification time: a run
    that names the same model three times reads it once)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        _memo[key] = h.hexdigest()
    return _memo[key]


def describe(path: Path) -> dict:
    """{"path", "kind", "bytes", "sha256"} of a file or a folder (its files, recursively)."""
    if path.is_file():
        return {"path": str(path), "kind": "file", "bytes": path.stat().st_size, "sha256": file_hash(path)}
    entries, total = [], 0
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path)
        if SKIP_DIRS.intersection(rel.parts[:-1]):
            continue
        total += f.stat().st_size
        entries.append(f"{rel.as_posix()}\t{file_hash(f)}")
    digest = hashlib.sha256("\n".join(entries).encode()).hexdigest()
    return {"path": str(path), "kind": "folder", "bytes": total, "files": len(entries), "sha256": digest}


def _paths(tree: Any, key: str = "") -> list[tuple[str, str]]:
    """(config key, string value) of every string leaf."""
    if isinstance(tree, dict):
        return [kv for k, v in tree.items() for kv in _paths(v, f"{key}.{k}" if key else str(k))]
    if isinstance(tree, (list, tuple)):
        return [kv for i, v in enumerate(tree) for kv in _paths(v, f"{key}[{i}]")]
    return [(key, tree)] if isinstance(tree, str) else []


def _local(spec: str) -> Path | None:
    """The local file or folder a config value names: a path, or a built-in model's folder
    (`default`, `tiny-random`) when it is installed; None otherwise."""
    from common.models import ALIASES, DEFAULT_MODEL, TINY_MODEL, builtin_model_dir, is_complete_model_dir

    spec = ALIASES.get(spec, spec)
    if spec in (DEFAULT_MODEL, TINY_MODEL):
        folder = builtin_model_dir(spec)
        return folder if is_complete_model_dir(folder) else None
    try:
        path = Path(spec).expanduser()
        return path if path.exists() else None
    except OSError:
        return None


def _adapter_base(folder: Path) -> Path | None:
    """The base a LoRA adapter folder names (recorded by our stages), when it is local."""
    from common.models import adapter_base

    try:
        base = adapter_base(str(folder))
    except Exception:  # noqa: BLE001 — provenance records what it can
        return None
    return _local(base) if base else None


def inputs(config: dict, run_dir: Path) -> dict[str, dict]:
    """{config key: description} of every existing path the config names (outputs excluded)."""
    out: dict[str, dict] = {}
    run_dir = Path(run_dir).resolve()
    for key, value in _paths(config):
        if key in ("output_root", "run_name", "resume") or not value or "\n" in value or len(value) > 4096:
            continue
        path = _local(value)
        if path is None:
            continue
        resolved = path.resolve()
        if resolved == run_dir or run_dir in resolved.parents or resolved in run_dir.parents:
            continue
        out[key] = describe(path)
        base, depth = _adapter_base(path) if path.is_dir() else None, 0
        while base is not None and depth < 4:  # a LoRA adapter's base model, and its base's
            out[f"{key} (base{'' if depth == 0 else f' {depth + 1}'})"] = describe(base)
            base, depth = _adapter_base(base), depth + 1
    return out


def provenance(config: dict, run_dir: Path) -> dict:
    return {"git": git_state(), "config": config, "inputs": inputs(config, run_dir)}


def write_provenance(config: dict, run_dir: Path) -> dict:
    """Record and write `<run>/provenance.json` (atomically); returns the record."""
    record = provenance(config, run_dir)
    path = Path(run_dir) / PROVENANCE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False, default=str))
    tmp.replace(path)
    return record


def read_provenance(run_dir: Path) -> dict | None:
    path = Path(run_dir) / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.is_file() else None
