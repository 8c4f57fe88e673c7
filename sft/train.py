"""SFT steps: build the trainer (TRL SFTTrainer), train with resume, publish, sample."""

from __future__ import annotations

import json
from pathlib import Path

from common import training
from common.models import load_model_and_tokenizer
from common.models.generate import chat
from sft.config import SFTStageConfig
from sft.data import PreparedData

SAMPLE_PROMPTS = ["What should I do if I have a mild headache?", "Explain what a bond is in one sentence."]


def build_trainer(cfg: SFTStageConfig, run_dir: Path, data: PreparedData, model, tokenizer):
    from trl import SFTConfig, SFTTrainer

    parts = training.trainer_parts(cfg, run_dir, data.validation is not None)
    args = SFTConfig(
        **parts.args,
        max_length=cfg.max_length,
        packing=cfg.packing,
        assistant_only_loss=cfg.assistant_only_loss,
        dataset_num_proc=None,
    )
    return SFTTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        processing_class=tokenizer,
        peft_config=training.lora_config(cfg, "CAUSAL_LM"),
        callbacks=parts.callbacks,
    )


def sample_answers(model_dir: Path, run_dir: Path, prompts: list[str] = SAMPLE_PROMPTS) -> list[dict]:
    """Reload the published model the way the next stage will and answer a few prompts."""
    training.leave_deepspeed()
    model, tokenizer = load_model_and_tokenizer(str(model_dir))
    samples = [{"prompt": p, "answer": chat(model, tokenizer, [{"role": "user", "content": p}])} for p in prompts]
    with (run_dir / "samples.jsonl").open("w") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    return samples

