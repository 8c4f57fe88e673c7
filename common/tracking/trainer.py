"""Tracking for the stages trained by a Hugging Face Trainer (SFT, reward model, DPO): transformers'
own `report_to` integrations, configured through their environment variables (`setup.py`), plus our
callbacks — the resolved config and provenance on each tracker's run, and every logged dict in
`<run>/metrics.jsonl`."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from common.tracking.metrics import append_metrics
from common.tracking.setup import (
    _set_env,
    active_trackers,
    mlflow_record,
    mlflow_uri,
    run_id,
    setup_trackers,
    tensorboard_dir,
    tensorboard_text,
    without_config,
)


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
        from common.tracking.provenance import read_provenance

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
            tensorboard_text(tensorboard_dir(self.run_dir), record)


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
                    from common.tracking.provenance import read_provenance

                    self._trackio.config.update({"rlhfkit": to_dict(cfg),
                                                 "provenance": without_config(read_provenance(run_dir))})

        callbacks.append(Trackio())
    return [n for n in names if n != "trackio"], callbacks


class MetricsFileCallback(TrainerCallback):
    """Appends every logged dict, with step and wall time, to `<run>/metrics.jsonl` (rank 0)."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        append_metrics(self.run_dir, {"step": state.global_step, "epoch": state.epoch, "time": time.time(), **logs})


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
