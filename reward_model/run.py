"""The reward-model stage in order: backbone + head and preference groups (every check before
anything is written) → run folder → training with resume → the sanity suite on the validation
prompts → the final model with the statistics its consumers normalise by (`reward_config.json`)
and its sanity figures (`sanity.json`) → the held-out figures. With `ensemble: n` the same for each
of n members (`reward_model/ensemble.py`)."""

from __future__ import annotations

from pathlib import Path

from common import distributed, training
from common.config import ConfigError
from common.rewards.ensemble import is_ensemble_folder
from common.rewards.sanity import SANITY_FILE, format_sanity
from common.rewards.scorer import REWARD_CONFIG
from common.tracking import finish_trackers
from reward_model import data as rm_data
from reward_model.config import RMStageConfig
from reward_model.losses import LENGTH, QUALITY
from reward_model.metrics import format_metrics
from reward_model.sanity import stage_sanity
from reward_model.train import build_model, build_trainer


def odin_reward_config(summary: dict, prefix: str) -> dict:
    """What `load_reward_scorer` needs to choose a head of ODIN's 2-output classifier: which outputs
    make each head, the default one (quality, what PPO should optimise) and each head's statistics.
    The top-level reward_mean/std (above) are the quality head's, so older readers normalise right."""
    def stats(name: str) -> dict[str, float]:
        key = "" if name == "quality" else f"{name}_head/"
        return {"reward_mean": summary[f"{prefix}_{key}reward_mean"], "reward_std": summary[f"{prefix}_{key}reward_std"]}

    return {
        "heads": "odin",
        "num_labels": 2,
        "outputs": {"quality": [QUALITY], "length": [LENGTH], "sum": [QUALITY, LENGTH]},
        "head": "quality",
        "head_stats": {name: stats(name) for name in ("quality", "length", "sum")},
    }


def train_one(cfg: RMStageConfig, run_dir: Path, model, tokenizer, data: rm_data.PreparedPreferences,
              extra_summary: dict | None = None) -> tuple[Path, dict]:
    """Train one reward model in `run_dir` (created) → (its model folder, its summary)."""
    trainer = build_trainer(cfg, run_dir, data, model, tokenizer)
    summary = training.train_with_resume(cfg, run_dir, trainer)
    if data.validation is None:  # reward statistics still need scored responses
        summary.update(trainer.evaluate(data.train.select(range(min(256, len(data.train)))), metric_key_prefix="train_sample"))
    prefix = "eval" if data.validation is not None else "train_sample"
    reward_config = {
        "max_length": cfg.max_length,
        "loss": cfg.loss,
        "reward_mean": summary[f"{prefix}_reward_mean"],
        "reward_std": summary[f"{prefix}_reward_std"],
    }
    if cfg.heads == "odin":
        reward_config.update(odin_reward_config(summary, prefix))
    files = {REWARD_CONFIG: reward_config}
    sanity = stage_sanity(cfg, trainer.model, tokenizer, data.validation_groups, reward_config["reward_mean"],
                          reward_config["reward_std"])
    if sanity is not None:
        files[SANITY_FILE] = summary["sanity"] = sanity
    summary.update(extra_summary or {})
    final = training.save_final(cfg, run_dir, trainer, summary, extra_files=files)
    finish_trackers()
    return final, summary


def held_out_report(summary: dict) -> str:
    """The printed figures of one trained model: held-out metrics, then its sanity suite."""
    prefix = "eval" if any(k.startswith("eval_") for k in summary) else "train_sample"
    figures = {k.removeprefix(f"{prefix}_"): v for k, v in summary.items() if k.startswith(prefix)}
    text = f"held-out figures ({'validation' if prefix == 'eval' else 'training sample'}):\n" + format_metrics(figures)
    if "sanity" in summary:
        text += "\n" + format_sanity(summary["sanity"])
    return text


def run(cfg: RMStageConfig, run_dir: Path) -> Path:
    if cfg.ensemble > 1:
        from reward_model.ensemble import run_ensemble

        return run_ensemble(cfg, run_dir)
    if is_ensemble_folder(cfg.model):
        raise ConfigError(f"model: {cfg.model} is an ensemble folder; continue it with ensemble: <its member count> "
                          "(each member continues from its own)")
    model, tokenizer = build_model(cfg)  # the new head's initial weights come from the seed
    data = rm_data.prepare(cfg, tokenizer)  # raises on a bad row, before anything is written
    training.open_run(cfg, run_dir, data.report)
    final, summary = train_one(cfg, run_dir, model, tokenizer, data)
    if distributed.is_main_process():
        print(held_out_report(summary))
        print(f"reward model done: {final}; metrics in {run_dir / 'metrics.jsonl'}")
    return final
