"""python -m ppo --config configs/ppo/default.yaml [--key value ...]"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from tqdm.auto import tqdm
from transformers import set_seed

from common.cli import run_stage
from common import distributed
from common.config import ConfigError, parse_args, to_dict
from common.data import DataError
from common.models import load_model_and_tokenizer, save_model_folder
from common.reward import load_reward_scorer
from common.rewards.mixer import RewardMixer, load_domains
from common.runs import FINAL, check_run_dir, open_run_dir, publish, run_dir_for
from common.tracking import append_metrics, finish_wandb, start_wandb, truncate_metrics
from common.training import record_adapter_base
from ppo.config import PPOStageConfig
from ppo.data import drop_long_prompts, load_prompts
from ppo.plot import plot_reward_curve
from ppo.scoring import MixedReward
from ppo.state import batch_for_step, latest_checkpoint, load_checkpoint, save_checkpoint
from ppo.trainer import PPOTrainer, build_critic

log = logging.getLogger("ppo")


def build(cfg: PPOStageConfig):
    """Models, prompts and reward, before anything is written."""
    domains = load_domains(cfg.domains_dir)
    policy, tokenizer = load_model_and_tokenizer(cfg.policy)
    prompts = drop_long_prompts(load_prompts(cfg, set(domains)), tokenizer, cfg.max_prompt_tokens)
    if not prompts:
        raise DataError("no prompts left within max_prompt_tokens")
    scorer = load_reward_scorer(cfg.reward_model) if cfg.reward_model else None
    critic_spec = cfg.critic or cfg.reward_model or cfg.policy
    critic = build_critic(critic_spec, zero_head=critic_spec == cfg.policy, freeze_layers=cfg.critic_freeze_layers)
    mixer = RewardMixer(domains)
    reward = MixedReward(mixer, scorer)
    return PPOTrainer(cfg, policy, tokenizer, critic, reward), prompts, mixer, reward


def save_policy(cfg: PPOStageConfig, run_dir: Path, trainer: PPOTrainer) -> Path:
    """The trained policy as model/: a LoRA adapter naming its base, or full weights."""
    final, tmp = run_dir / FINAL, run_dir / (FINAL + ".tmp")
    if cfg.finetune == "lora":
        trainer.policy.save_pretrained(tmp)
        trainer.tokenizer.save_pretrained(tmp)
        record_adapter_base(tmp, cfg.policy)
        publish(tmp, final)
        return final
    return save_model_folder(trainer.policy, trainer.tokenizer, final)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(PPOStageConfig, argv, prog="python -m ppo")
    if distributed.world_size() > 1:
        raise ConfigError("PPO runs in one process for now: multi-process PPO with DeepSpeed is not built yet")
    run_dir = run_dir_for(cfg.output_root, cfg.run_name)
    check_run_dir(run_dir, cfg.overwrite)
    set_seed(cfg.seed)
    trainer, prompts, mixer, reward = build(cfg)
    open_run_dir(run_dir, cfg)

    start = 0
    checkpoint = latest_checkpoint(run_dir) if cfg.resume else None
    if checkpoint is not None:
        start = load_checkpoint(checkpoint, trainer, mixer)
        truncate_metrics(run_dir, start)
        log.info("resumed from %s", checkpoint)
    wandb_run = start_wandb(run_dir, cfg.wandb_project, cfg.run_name, cfg.wandb_mode, to_dict(cfg))

    for step in tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="PPO"):
        stats = trainer.step(batch_for_step(prompts, step, cfg.prompts_per_step, cfg.seed))
        stats.update(reward.last_log)
        append_metrics(run_dir, {"step": step + 1, **stats})
        with (run_dir / "samples.jsonl").open("a") as f:
            for sample in trainer.last_samples:
                f.write(json.dumps({"step": step + 1, **sample}, ensure_ascii=False) + "\n")
        if wandb_run is not None:
            wandb_run.log(stats, step=step + 1)
        if (step + 1) % cfg.save_steps == 0 or step + 1 == cfg.steps:
            save_checkpoint(run_dir, step + 1, trainer, mixer.state_dict(), cfg.save_total_limit)
    final = save_policy(cfg, run_dir, trainer)
    finish_wandb()
    curve = plot_reward_curve(run_dir)
    print(f"PPO done: policy in {final}; metrics in {run_dir / 'metrics.jsonl'}; curve in {curve}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
