"""What every stage trained with a Hugging Face `Trainer` shares: the options (model, LoRA,
optimisation, checkpoints, early stopping, tracking, DeepSpeed), how they become trainer
arguments, resume, and publishing the final model into the run folder."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import EarlyStoppingCallback

from common import distributed
from common.config import param
from common.data.hygiene import HygieneReport
from common.models import ADAPTER_CONFIG, DEFAULT_MODEL, load_model_and_tokenizer, resolve_model
from common.models.lora import LoraSettings, peft_config
from common.models.precision import resolve_precision
from common.runs import CHECKPOINTS, FINAL, RunOptions, open_run_dir, publish, resolve_resume
from common.timing import CLOCK
from common.tracking import MetricsFileCallback, tracker_run_name, trainer_trackers, truncate_metrics

log = logging.getLogger(__name__)


@dataclass
class TrainingOptions(RunOptions):
    """Options shared by the trainer-based stages (each stage's config extends this)."""

    # --- what to train
    model: str = param(DEFAULT_MODEL, help="model spec: default model, tiny-random, a folder, or a hub id")
    finetune: Literal["lora", "full", "qlora"] = param(
        "lora", help="train a LoRA adapter, all weights, or a LoRA adapter on a frozen 4-bit NF4 base (QLoRA: "
        "bitsandbytes; the saved adapter applies to the full-precision base)")
    lora: LoraSettings = param(LoraSettings(), help="LoRA shape")

    # --- optimisation
    learning_rate: float = param(2e-4, help="peak learning rate")
    lr_scheduler: str = param("cosine", help="transformers scheduler name")
    warmup_ratio: float = param(0.03, help="share of steps spent warming up, in [0, 1)")
    weight_decay: float = param(0.0, help="AdamW weight decay")
    epochs: float = param(1.0, help="passes over the training data (ignored when max_steps > 0)")
    max_steps: int = param(-1, help="stop after this many optimizer steps (-1 = use epochs)")
    batch_size: int = param(8, help="examples per device per micro-batch")
    grad_accum: int = param(1, help="micro-batches per optimizer step")
    max_grad_norm: float = param(1.0, help="gradient clipping norm")
    gradient_checkpointing: bool = param(False, help="recompute activations to save memory")

    # --- logging, evaluation, stopping
    logging_steps: int = param(5, help="log metrics every N steps")
    eval_steps: int = param(50, help="evaluate on the validation split every N steps")
    early_stopping_patience: int | None = param(None, help="stop after N evals without improvement (None = off)")
    early_stopping_threshold: float = param(0.0, help="minimum eval-loss improvement that counts")

    def __post_init__(self):
        for key in ("batch_size", "grad_accum", "logging_steps", "eval_steps", "save_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be ≥ 1, got {getattr(self, key)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.early_stopping_patience is not None:
            if self.early_stopping_patience < 1:
                raise ValueError("early_stopping_patience must be ≥ 1 (or null to turn it off)")
            if self.save_steps % self.eval_steps:
                raise ValueError(
                    "early stopping keeps the best checkpoint, so save_steps must be a multiple of eval_steps "
                    f"(got save_steps={self.save_steps}, eval_steps={self.eval_steps})"
                )


def trainer_kwargs(cfg: TrainingOptions, run_dir: Path, has_validation: bool, report_to: list[str]) -> dict[str, Any]:
    """`TrainingArguments` keywords (TRL configs take the same) for the shared options."""
    on_cpu = not torch.cuda.is_available()
    early = cfg.early_stopping_patience is not None
    return dict(
        output_dir=str(run_dir / CHECKPOINTS),
        run_name=tracker_run_name(cfg),  # the run's name in every tracker (e.g. sft/default)
        report_to=report_to,
        project=cfg.project,  # trackio's project
        seed=cfg.seed,
        data_seed=cfg.seed,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a share of the total steps
        weight_decay=cfg.weight_decay,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        max_grad_norm=cfg.max_grad_norm,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=resolve_precision(cfg.precision) == "bf16",
        use_cpu=on_cpu,
        # gloo only when there is a process group to make: a 1-process run has none
        ddp_backend="gloo" if on_cpu and distributed.world_size() > 1 else None,
        deepspeed=cfg.deepspeed,
        dataloader_num_workers=0,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_validation else "no",
        eval_steps=cfg.eval_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        disable_tqdm=False,
    )


def lora_config(cfg: TrainingOptions, task_type: str, modules_to_save: list[str] | None = None):
    """A PEFT `LoraConfig` for finetune = lora or qlora, else None."""
    return peft_config(cfg.lora, task_type, modules_to_save) if cfg.finetune != "full" else None


def load_model(cfg: TrainingOptions, model_class: Any = None, **kwargs: Any):
    """The model the stage trains and its tokenizer: `cfg.model` as loaded for lora and full, its
    frozen base in 4-bit NF4 prepared for training for qlora (common/models/quantized.py)."""
    if cfg.finetune == "qlora":
        from common.models.quantized import load_qlora_model

        return load_qlora_model(cfg.model, cfg.precision, model_class=model_class, **kwargs)
    return load_model_and_tokenizer(cfg.model, model_class=model_class, **kwargs)


@dataclass
class TrainerParts:
    """What a stage's Trainer is built from: `TrainingArguments` keywords (TRL configs take the same)
    and the callbacks (metrics file, trackers, early stopping)."""

    args: dict[str, Any]
    callbacks: list


def trainer_parts(cfg: TrainingOptions, run_dir: Path, has_validation: bool) -> TrainerParts:
    """Configure the recipe's trackers once and return the trainer's arguments and callbacks."""
    report_to, tracker_callbacks = trainer_trackers(cfg, run_dir)
    callbacks = [MetricsFileCallback(run_dir), *tracker_callbacks]
    if cfg.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(cfg.early_stopping_patience, cfg.early_stopping_threshold))
    return TrainerParts(trainer_kwargs(cfg, run_dir, has_validation, report_to), callbacks)


def open_run(cfg: TrainingOptions, run_dir: Path, report: HygieneReport, notes: tuple[str, ...] = ()) -> None:
    """After the data passed every check: rank 0 prints the hygiene table (and `notes`) and creates
    the run folder (config, provenance, data report); every rank waits for it."""
    if distributed.is_main_process():
        print("data hygiene:\n" + report.table(), flush=True)
        for note in notes:
            print(note, flush=True)
        open_run_dir(run_dir, cfg, report)
    distributed.barrier()


def train_with_resume(cfg: TrainingOptions, run_dir: Path, trainer) -> dict:
    """Train (resuming per cfg.resume), evaluate, and return the summary figures."""
    checkpoint = resolve_resume(run_dir, cfg.resume)
    if cfg.resume == "never":
        shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
        if distributed.is_main_process():
            truncate_metrics(run_dir, int(Path(checkpoint).name.split("-")[-1]))
    with CLOCK.phase("train"):  # checkpoints and periodic evaluations included, as the Trainer runs them
        result = trainer.train(resume_from_checkpoint=checkpoint)
    summary = {"train_loss": result.training_loss, "global_step": result.global_step, **result.metrics}
    if trainer.eval_dataset is not None:
        with CLOCK.phase("evaluate"):
            summary.update(trainer.evaluate())
    summary["resumed_from"] = checkpoint
    return summary


def base_spec(model_spec: str) -> str:
    """How a saved adapter names its base: built-in names stay names, folders (and GGUF files) become absolute."""
    resolved = resolve_model(model_spec)
    return str(Path(resolved).resolve()) if Path(resolved).exists() and Path(model_spec).exists() else model_spec


def record_adapter_base(folder: Path, model_spec: str) -> None:
    """A saved LoRA adapter names the spec it was trained on; full weights are left alone."""
    path = Path(folder) / ADAPTER_CONFIG
    if path.is_file():
        meta = json.loads(path.read_text())
        meta["base_model_name_or_path"] = base_spec(model_spec)
        path.write_text(json.dumps(meta, indent=2))


def save_final(cfg: TrainingOptions, run_dir: Path, trainer, summary: dict, extra_files: dict[str, Any] | None = None) -> Path:
    """Write the model to model.tmp (all ranks: ZeRO-3 gathers), then rank 0 adds the
    tokenizer and `extra_files` (name → JSON-able) and publishes it as model/."""
    tmp = run_dir / (FINAL + ".tmp")
    final = run_dir / FINAL
    with CLOCK.phase("save"):
        trainer.save_model(str(tmp))
        if distributed.is_main_process():
            trainer.processing_class.save_pretrained(tmp)
            record_adapter_base(tmp, cfg.model)
            for name, content in (extra_files or {}).items():
                (tmp / name).write_text(json.dumps(content, indent=2))
            publish(tmp, final)
            (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        distributed.barrier()
    return final


def leave_deepspeed() -> None:
    """After ZeRO-3 training, let `from_pretrained` load whole weights again, not partitions."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
