"""Each tracker's set-up for a run folder: its store (`<runs>/trackio/`, `<runs>/mlflow.db`, `<run>/wandb/`,
`<run>/tensorboard/`), its run id kept in the run folder (a resumed run continues the same tracker run),
and the resolved config and provenance as each tracker records them."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

from common.distributed import is_main_process

log = logging.getLogger(__name__)

TRACKERS = ("wandb", "trackio", "mlflow", "tensorboard")
_SET_BY_US: dict[str, str] = {}  # environment values this module set (a user's own values win)


def _set_env(key: str, value: str) -> None:
    os.environ[key] = value
    _SET_BY_US[key] = value


def _user_env(key: str) -> str | None:
    """The user's value of `key`: set, and not by this module."""
    value = os.environ.get(key)
    return value if value and _SET_BY_US.get(key) != value else None


def store_root(cfg) -> Path:
    """Where shared tracker stores go: the parent of the stage's output_root (`runs/`)."""
    return Path(cfg.output_root).resolve().parent


def tracker_run_name(cfg) -> str:
    """The run's name in every tracker: `<stage folder>/<run name>` (e.g. ppo/default), unique in a
    project where each stage has its own `default` — and the name `make dashboard` shows."""
    return f"{Path(cfg.output_root).name}/{cfg.run_name}"


def active_trackers(cfg) -> list[str]:
    """The recipe's trackers, less W&B when `wandb_mode` (or $WANDB_MODE) is disabled."""
    mode = cfg.wandb_mode or os.environ.get("WANDB_MODE") or "offline"
    return [t for t in dict.fromkeys(cfg.trackers) if not (t == "wandb" and mode == "disabled")]


# ----------------------------------------------------------------------------- per-tracker set-up


def run_id(run_dir: Path, tracker: str, make=None) -> str:
    """The run folder's id in `tracker`, made once (by `make()`, else a random hex) and kept in
    `<run>/<tracker>_id`: a resumed run continues the same tracker run."""
    id_file = Path(run_dir) / f"{tracker}_id"
    if not id_file.is_file():
        id_file.write_text(make() if make else uuid.uuid4().hex[:12])
    return id_file.read_text().strip()


def wandb_run_id(run_dir: Path) -> str:
    return run_id(run_dir, "wandb")


def setup_wandb(run_dir: Path, project: str, run_name: str, mode: str | None) -> None:
    mode = mode or os.environ.get("WANDB_MODE") or "offline"
    os.environ["WANDB_MODE"] = mode
    os.environ["WANDB_DIR"] = str(run_dir)
    os.environ.setdefault("WANDB_PROJECT", project)
    os.environ["WANDB_NAME"] = run_name
    if is_main_process():  # the only rank that logs
        os.environ["WANDB_RUN_ID"] = wandb_run_id(run_dir)
        os.environ["WANDB_RESUME"] = "allow"
    os.environ.setdefault("WANDB_SILENT", "true")


def setup_trackio(cfg) -> None:
    directory = str(store_root(cfg) / "trackio")
    if _user_env("TRACKIO_DIR") is None:
        loaded = sys.modules.get("trackio.utils")
        if loaded is not None and str(loaded.TRACKIO_DIR) != directory:
            log.warning("trackio was imported before its store was set; it logs to %s", loaded.TRACKIO_DIR)
        _set_env("TRACKIO_DIR", directory)


def mlflow_uri(cfg) -> str:
    return _user_env("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root(cfg) / 'mlflow.db'}"


def setup_mlflow(cfg, run_dir: Path) -> str:
    """Point MLflow at its store and experiment (the recipe's project), and make (once) the MLflow
    run this run folder logs to; returns its id."""
    uri = mlflow_uri(cfg)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    _set_env("MLFLOW_TRACKING_URI", uri)
    _set_env("MLFLOW_EXPERIMENT_NAME", cfg.project)

    def create() -> str:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(cfg.project)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(cfg.project)
        return client.create_run(experiment_id, run_name=tracker_run_name(cfg)).info.run_id

    rid = run_id(run_dir, "mlflow", create)
    _set_env("MLFLOW_RUN_ID", rid)
    return rid


def tensorboard_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "tensorboard"


def setup_trackers(cfg, run_dir: Path) -> list[str]:
    """Configure every active tracker for `run_dir` (rank 0 makes the run ids); returns their names."""
    names = active_trackers(cfg)
    if "wandb" in names:
        setup_wandb(run_dir, cfg.project, tracker_run_name(cfg), cfg.wandb_mode)
    if not is_main_process():
        return names  # the integrations log from rank 0 only
    if "trackio" in names:
        setup_trackio(cfg)
    if "mlflow" in names:
        setup_mlflow(cfg, run_dir)
    if "tensorboard" in names:
        _set_env("TENSORBOARD_LOGGING_DIR", str(tensorboard_dir(run_dir)))
    return names


# ----------------------------------------------------------------------------- the resolved config


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"a.b.c": leaf} of nested dicts; lists become their JSON text."""
    out: dict[str, Any] = {}
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    out[prefix[:-1]] = json.dumps(tree, ensure_ascii=False) if isinstance(tree, (list, tuple)) else tree
    return out


def _mlflow_key(key: str) -> str:
    """A name MLflow accepts (alphanumerics, _ - . space : /), at most 250 characters."""
    key = key.replace("[", ".").replace("]", "")
    return re.sub(r"[^A-Za-z0-9_\-. :/]", "_", key)[:250]


def mlflow_record(client, rid: str, config: dict, provenance: dict | None) -> None:
    """Params (the resolved config, flattened; logged once — MLflow params never change) and tags
    (provenance: git commit in MLflow's own tag, content hashes) on an MLflow run."""
    from mlflow.entities import Param, RunTag

    run = client.get_run(rid)
    if not any(k.startswith("config.") for k in run.data.params):
        params = [Param(_mlflow_key(f"config.{k}"), str(v)[:6000]) for k, v in flatten(config).items()]
        for i in range(0, len(params), 100):  # MLflow's batch limit
            client.log_batch(rid, params=params[i : i + 100])
    if provenance:
        tags = [RunTag(_mlflow_key(f"provenance.{k}"), str(v)[:5000]) for k, v in flatten(provenance).items()]
        git = provenance.get("git") or {}
        if git.get("commit"):
            tags.append(RunTag("mlflow.source.git.commit", git["commit"]))
        for i in range(0, len(tags), 100):
            client.log_batch(rid, tags=tags[i : i + 100])


def without_config(provenance: dict | None) -> dict:
    """Provenance as trackers get it: the config goes to them on its own."""
    return {k: v for k, v in (provenance or {}).items() if k != "config"}




def tensorboard_text(directory: Path, record: dict) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(directory)) as writer:
        writer.add_text("config", "```\n" + json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n```")
