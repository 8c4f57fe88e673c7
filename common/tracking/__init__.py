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

from common.tracking.direct import Tracking
from common.tracking.metrics import METRICS_FILE, append_metrics, read_metrics, truncate_metrics
from common.tracking.setup import TRACKERS, flatten, setup_trackers, tracker_run_name
from common.tracking.trainer import ConfigCallback, MetricsFileCallback, finish_trackers, trainer_trackers

__all__ = [
    "METRICS_FILE", "TRACKERS", "ConfigCallback", "MetricsFileCallback", "Tracking", "append_metrics", "finish_trackers",
    "flatten", "read_metrics", "setup_trackers", "tracker_run_name", "trainer_trackers", "truncate_metrics",
]
