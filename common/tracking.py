"""Experiment tracking: the trackers a recipe names (`trackers:`), plus a plain metrics file per run.

Every stage writes `<run>/metrics.jsonl` (rank 0) whatever the trackers; on top of it, any of

  wandb        W&B, offline unless `wandb_mode`/`$WANDB_MODE` says otherwise: `<run>/wandb/`
  trackio      Hugging Face's local-first tracker (SQLite + a Gradio dashboard, no account):
               `<runs>/trackio/<project>.db`, shown by `make dashboard`
  mlflow       MLflow: `$MLFLOW_TRACKING_URI` if set, else the SQLite store `<runs>/mlflow.db`
               (MLflow 3 keeps its `mlruns/` file store in maintenance mode and refuses it by default)
  tensorboard  event files in `<run>/tensorboard/` (`tensorboard --logdir runs`)

where `<runs>` is the parent of the stage's `output_root` (`runs/` by default). Stages trained by a
Hugging Face Trainer (SFT, reward model, DPO) log through transformers' own `report_to`
integrations, configured here through their environment variables; `ConfigCallback` adds our
resolved config and provenance to each. PPO, BCQ and evaluation log through `Tracking`, which calls
each library's own API. Only rank 0 logs. A resumed run continues the same run: the W&B and MLflow
run ids are kept in the run folder, trackio resumes by run name, TensorBoard drops events past the
resume step.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from common.distributed import is_main_process

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
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


class ConfigCallback(TrainerCallback):
    """Adds the stage's resolved config and provenance to the W&B, MLflow and TensorBoard runs the
    Trainer's integrations opened (they record only TrainingArguments and the model's config);
    trackio's gets them through `trainer_trackers`' subclass."""

    def __init__(self, cfg, run_dir: Path):
        self.cfg, self.run_dir = cfg, Path(run_dir)

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from common.config import to_dict
        from common.provenance import read_provenance

        self.config, self.provenance = to_dict(self.cfg), without_config(read_provenance(self.run_dir))
        record = {"rlhfkit": self.config, "provenance": self.provenance or {}}
        names = active_trackers(self.cfg)
        if "wandb" in names and sys.modules.get("wandb") is not None and sys.modules["wandb"].run is not None:
            sys.modules["wandb"].run.config.update(record, allow_val_change=True)
        if "mlflow" in names:
            from mlflow.tracking import MlflowClient

            # the id from the run folder: MLflow's start_run clears $MLFLOW_RUN_ID once it has used it
            mlflow_record(MlflowClient(mlflow_uri(self.cfg)), run_id(self.run_dir, "mlflow"), self.config,
                          self.provenance)
        if "tensorboard" in names:
            _tensorboard_text(tensorboard_dir(self.run_dir), record)


    def on_train_end(self, args, state, control, **kwargs):
        # MLflowCallback ended its run and MLflow cleared $MLFLOW_RUN_ID; a later evaluate() would
        # start a second run: point it back at this one
        if state.is_world_process_zero and "mlflow" in active_trackers(self.cfg):
            _set_env("MLFLOW_RUN_ID", run_id(self.run_dir, "mlflow"))


def trainer_trackers(cfg, run_dir: Path) -> tuple[list[str], list]:
    """(`report_to`, extra callbacks) for a Hugging Face Trainer: transformers' integrations by
    name, and ours — the config/provenance callback, and trackio's integration subclassed so every
    (re)start of its run carries our config (it re-opens the run for an evaluate() after training,
    with only the Trainer's arguments as config)."""
    names = setup_trackers(cfg, run_dir)
    callbacks: list = [ConfigCallback(cfg, run_dir)]
    if "trackio" in names:
        from transformers.integrations import TrackioCallback

        class Trackio(TrackioCallback):
            def setup(self, args, state, model, **kwargs):
                super().setup(args, state, model, **kwargs)
                if state.is_world_process_zero:
                    from common.config import to_dict
                    from common.provenance import read_provenance

                    self._trackio.config.update({"rlhfkit": to_dict(cfg),
                                                 "provenance": without_config(read_provenance(run_dir))})

        callbacks.append(Trackio())
    return [n for n in names if n != "trackio"], callbacks


def _tensorboard_text(directory: Path, record: dict) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(directory)) as writer:
        writer.add_text("config", "```\n" + json.dumps(record, indent=2, ensure_ascii=False, default=str) + "\n```")


# ----------------------------------------------------------------------------- loops of our own


def _numbers(stats: dict) -> dict[str, float]:
    return {k: float(v) for k, v in stats.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))}


class Tracking:
    """The trackers of one run of a loop of our own (PPO, BCQ, evaluation): `log(stats, step)`
    appends to metrics.jsonl and logs to each tracker; `finish()` closes them. Rank 0 only —
    elsewhere every call does nothing."""

    def __init__(self, cfg, run_dir: Path, config: dict, provenance: dict | None = None, start_step: int = 0):
        self.run_dir = Path(run_dir)
        self.active = is_main_process()
        self.names = active_trackers(cfg) if self.active else []
        setup_trackers(cfg, run_dir)
        if not self.active:
            return
        provenance = without_config(provenance)
        record = {**config, "provenance": provenance}
        self.wandb = self.trackio = self.mlflow = self.tensorboard = None
        if "wandb" in self.names:
            import wandb

            self.wandb = wandb.init(project=os.environ["WANDB_PROJECT"], name=tracker_run_name(cfg), dir=str(run_dir),
                                    id=os.environ["WANDB_RUN_ID"], resume="allow", config=record)
        if "trackio" in self.names:
            import trackio

            self.trackio = trackio
            trackio.init(project=cfg.project, name=tracker_run_name(cfg), config=record, resume="allow", embed=False)
        if "mlflow" in self.names:
            from mlflow.tracking import MlflowClient

            self.mlflow = MlflowClient(mlflow_uri(cfg))
            self.mlflow_run = run_id(self.run_dir, "mlflow")
            self.mlflow.update_run(self.mlflow_run, status="RUNNING")
            mlflow_record(self.mlflow, self.mlflow_run, config, provenance)
        if "tensorboard" in self.names:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: a resumed run drops what was logged after its checkpoint (steps > start_step)
            self.tensorboard = SummaryWriter(str(tensorboard_dir(run_dir)), purge_step=start_step + 1 if start_step else None)
            self.tensorboard.add_text("config", "```\n" + json.dumps(record, indent=2, ensure_ascii=False,
                                                                       default=str) + "\n```", start_step)

    def log(self, stats: dict, step: int, metrics_file: bool = True) -> None:
        """`stats` at `step` to every tracker, and (unless `metrics_file` is false) to metrics.jsonl."""
        if not self.active:
            return
        if metrics_file:
            append_metrics(self.run_dir, {"step": step, **stats})
        numbers = _numbers(stats)
        if self.wandb is not None:
            self.wandb.log(stats, step=step)
        if self.trackio is not None:
            self.trackio.log(numbers, step=step)
        if self.mlflow is not None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            metrics = [Metric(_mlflow_key(k), v, now, step) for k, v in numbers.items()]
            for i in range(0, len(metrics), 1000):
                self.mlflow.log_batch(self.mlflow_run, metrics=metrics[i : i + 1000])
        if self.tensorboard is not None:
            for k, v in numbers.items():
                self.tensorboard.add_scalar(k, v, step)
            self.tensorboard.flush()

    def summary(self, figures: dict) -> None:
        """Final figures (W&B's run summary; the others keep the last logged value)."""
        if self.active and self.wandb is not None:
            self.wandb.summary.update(_numbers(figures))

    def finish(self) -> None:
        if not self.active:
            return
        if self.trackio is not None:
            self.trackio.finish()
        if self.mlflow is not None:
            self.mlflow.set_terminated(self.mlflow_run)
        if self.tensorboard is not None:
            self.tensorboard.close()
        finish_trackers()


def finish_trackers() -> None:
    """Close the W&B run (if any) so its summary is written now, not at interpreter exit, and
    drop W&B's process-wide settings so a next run in this process gets its own folder; end an
    MLflow run a Trainer's integration left open."""
    wandb = sys.modules.get("wandb")
    if wandb is not None:
        if wandb.run is not None:
            wandb.finish()
        wandb.teardown()
    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and getattr(mlflow, "active_run", None) and mlflow.active_run() is not None:
        mlflow.end_run()
    trackio = sys.modules.get("trackio")
    if trackio is not None and trackio.context_vars.current_run.get() is not None:
        trackio.finish()


# ----------------------------------------------------------------------------- metrics.jsonl


def append_metrics(run_dir: Path, record: dict) -> None:
    with (Path(run_dir) / METRICS_FILE).open("a") as f:
        f.write(json.dumps(record) + "\n")


class MetricsFileCallback(TrainerCallback):
    """Appends every logged dict, with step and wall time, to `<run>/metrics.jsonl` (rank 0)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        append_metrics(self.run_dir, {"step": state.global_step, "epoch": state.epoch, "time": time.time(), **logs})


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
