"""SFT steps: build the trainer (TRL SFTTrainer), train with resume, publish the final model."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from transformers import EarlyStoppingCallback

from common import distributed
from common.config import save_yaml
from common.generate import chat
from common.models import load_model_and_tokenizer, resolve_model
from common.precision import resolve_precision
from common.runs import CHECKPOINTS, FINAL, publish, resolve_resume
from common.tracking import MetricsFileCallback, setup_wandb, truncate_metrics
from sft.config import SFTStageConfig
from sft.data import PreparedData

log = logging.getLogger(__name__)

SAMPLE_PROMPTS = ["What should I do if I have a mild headache?", "Explain what a bond is in one sentence."]


def trainer_args(cfg: SFTStageConfig, run_dir: Path, has_validation: bool, report_to: list[str]):
    from trl import SFTConfig

    on_cpu = not torch.cuda.is_available()
    early = cfg.early_stopping_patience is not None
    return SFTConfig(
        output_dir=str(run_dir / CHECKPOINTS),
        run_name=cfg.run_name,
        report_to=report_to,
        seed=cfg.seed,
        data_seed=cfg.seed,
        # optimisation
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
        ddp_backend="gloo" if on_cpu and distributed.world_size() > 1 else None,
        deepspeed=cfg.deepspeed,
        # data
        max_length=cfg.max_length,
        packing=cfg.packing,
        assistant_only_loss=cfg.assistant_only_loss,
        dataset_num_proc=None,
        dataloader_num_workers=0,
        # logging, checkpoints, evaluation
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


def lora_config(cfg: SFTStageConfig):
    if cfg.finetune != "lora":
        return None
    from peft import LoraConfig

    targets = cfg.lora.target_modules
    return LoraConfig(
        r=cfg.lora.rank,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules="all-linear" if targets == ["all-linear"] else targets,
        layers_to_transform=cfg.lora.layers,
        task_type="CAUSAL_LM",
    )


def base_spec(model_spec: str) -> str:
    """How the saved adapter names its base: built-in names stay names, folders become absolute."""
    resolved = resolve_model(model_spec)
    return str(Path(resolved).resolve()) if Path(resolved).is_dir() and Path(model_spec).exists() else model_spec


def build_trainer(cfg: SFTStageConfig, run_dir: Path, data: PreparedData, model=None, tokenizer=None):
    from trl import SFTTrainer

    if model is None:
        model, tokenizer = load_model_and_tokenizer(cfg.model)
    report_to = setup_wandb(run_dir, cfg.wandb_project, cfg.run_name, cfg.wandb_mode)
    callbacks = [MetricsFileCallback(run_dir / "metrics.jsonl")]
    if cfg.early_stopping_patience is not None:
        callbacks.append(EarlyStoppingCallback(cfg.early_stopping_patience, cfg.early_stopping_threshold))
    return SFTTrainer(
        model=model,
        args=trainer_args(cfg, run_dir, data.validation is not None, report_to),
        train_dataset=data.train,
        eval_dataset=data.validation,
        processing_class=tokenizer,
        peft_config=lora_config(cfg),
        callbacks=callbacks,
    )


def train(cfg: SFTStageConfig, run_dir: Path, trainer) -> dict:
    """Train (resuming per cfg.resume), evaluate, and return the summary figures."""
    checkpoint = resolve_resume(run_dir, cfg.resume)
    if cfg.resume == "never":
        shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
    if checkpoint:
        log.info("resuming from %s", checkpoint)
        if distributed.is_main_process():
            truncate_metrics(run_dir, int(Path(checkpoint).name.split("-")[-1]))
    result = trainer.train(resume_from_checkpoint=checkpoint)
    summary = {"train_loss": result.training_loss, "global_step": result.global_step, **result.metrics}
    if trainer.eval_dataset is not None:
        summary.update(trainer.evaluate())
    summary["resumed_from"] = checkpoint
    return summary


def save_final(cfg: SFTStageConfig, run_dir: Path, trainer, summary: dict) -> Path:
    """Write the model to model.tmp (all ranks: ZeRO-3 gathers), then rank 0 publishes it."""
    tmp = run_dir / (FINAL + ".tmp")
    final = run_dir / FINAL
    trainer.save_model(str(tmp))
    if distributed.is_main_process():
        trainer.processing_class.save_pretrained(tmp)
        adapter_cfg = tmp / "adapter_config.json"
        if adapter_cfg.is_file():
            meta = json.loads(adapter_cfg.read_text())
            meta["base_model_name_or_path"] = base_spec(cfg.model)
            adapter_cfg.write_text(json.dumps(meta, indent=2))
        publish(tmp, final)
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    distributed.barrier()
    return final


def sample_answers(model_dir: Path, run_dir: Path, prompts: list[str] = SAMPLE_PROMPTS) -> list[dict]:
    """Reload the published model the way the next stage will and answer a few prompts."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()  # after ZeRO-3 training, load whole weights, not partitions
    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    samples = [{"prompt": p, "answer": chat(model, tokenizer, [{"role": "user", "content": p}])} for p in prompts]
    with (run_dir / "samples.jsonl").open("w") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    return samples


def write_run_files(cfg: SFTStageConfig, run_dir: Path, data: PreparedData) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, run_dir / "config.yaml")
    data.report.save(run_dir / "data_report.json")
