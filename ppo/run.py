"""The PPO stage in order: models, prompts and reward (every check before anything is written) →
run folder → resume → steps (rollout → score → advantages → update; samples and metrics logged,
checkpoints) → the final policy → its reward curve."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tqdm.auto import tqdm

from common import distributed
from common.config import to_dict
from common.data import DataError, batch_for_step
from common.data.prompts import drop_long_prompts, load_prompts
from common.models import load_model_and_tokenizer, save_model_folder
from common.models.precision import resolve_precision
from common.rewards.mixer import RewardMixer, load_domains
from common.rewards.scorer import load_reward_scorer
from common.runs import FINAL, open_run_dir, publish
from common.stage import rank_seed, seed_everything
from common.tracking import Tracking
from common.tracking.provenance import read_provenance
from common.training import record_adapter_base
from common.training.checkpoints import resume
from common.training.engines import ds_config, inference_module
from ppo.config import PPOStageConfig
from ppo.models import build_critic
from ppo.plot import plot_reward_curve
from ppo.scoring import MixedReward
from ppo.state import load_checkpoint, save_checkpoint
from ppo.trainer import PPOTrainer

log = logging.getLogger("ppo")


def build(cfg: PPOStageConfig):
    """Models, prompts and reward, before anything is written."""
    domains = load_domains(cfg.domains_dir)
    if cfg.finetune == "qlora":
        from common.models.quantized import load_qlora_model

        policy, tokenizer = load_qlora_model(cfg.policy, cfg.precision)
    else:
        policy, tokenizer = load_model_and_tokenizer(cfg.policy)
    prompts = drop_long_prompts(load_prompts(cfg.prompts, set(domains), cfg.seed), tokenizer, cfg.max_prompt_tokens)
    if not prompts:
        raise DataError("no prompts left within max_prompt_tokens")
    ds = None
    if cfg.deepspeed:
        bf16 = resolve_precision(cfg.precision) == "bf16"
        ds = ds_config(cfg.deepspeed, cfg.mini_batch_size // distributed.world_size(), cfg.max_grad_norm, bf16,
                       policy.config.hidden_size)
    scorer = load_reward_scorer(cfg.reward_model) if cfg.reward_model else None
    if scorer is not None:
        scorer.model = inference_module(scorer.model, ds)
    critic = None
    if cfg.value_model == "separate" and cfg.uses_critic:  # the critic-free estimators load no value model
        critic_spec = cfg.critic or cfg.reward_model or cfg.policy
        critic = build_critic(critic_spec, zero_head=critic_spec == cfg.policy, freeze_layers=cfg.critic_freeze_layers)
    mixer = RewardMixer(domains, rm_saved_stats=cfg.reward_norm == "reward_model",
                        components=tuple(cfg.reward_components) if cfg.reward_components else None,
                        strict_constraints=cfg.constraint_scoring == "strict")
    reward = MixedReward(mixer, scorer)
    return PPOTrainer(cfg, policy, tokenizer, critic, reward, ds), prompts, mixer, reward


def save_policy(cfg: PPOStageConfig, run_dir: Path, trainer: PPOTrainer) -> Path:
    """The trained policy as model/: a LoRA adapter naming its base, or full weights.
    Every rank calls this (ZeRO-3 gathers the weights); rank 0 writes."""
    final, tmp = run_dir / FINAL, run_dir / (FINAL + ".tmp")
    adapter = cfg.finetune != "full"  # lora, qlora: the adapter alone
    params = [p for p in trainer.policy.parameters() if p.requires_grad] if adapter else None
    with trainer.actor.gathered(params):
        if distributed.is_main_process():
            if adapter:
                trainer.policy.save_pretrained(tmp)
                trainer.tokenizer.save_pretrained(tmp)
                record_adapter_base(tmp, cfg.policy)
                publish(tmp, final)
            else:
                save_model_folder(trainer.policy, trainer.tokenizer, final)
    distributed.barrier()
    return final


def run(cfg: PPOStageConfig, run_dir: Path) -> Path:
    main_rank = distributed.is_main_process()
    trainer, prompts, mixer, reward = build(cfg)
    if main_rank:
        open_run_dir(run_dir, cfg)
    distributed.barrier()
    seed_everything(rank_seed(cfg.seed))  # each rank samples differently
    start = resume(cfg, run_dir, lambda checkpoint: load_checkpoint(checkpoint, trainer, mixer))
    tracking = Tracking(cfg, run_dir, to_dict(cfg), read_provenance(run_dir), start_step=start)

    rank, world = distributed.rank(), distributed.world_size()
    for step in tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="PPO", disable=not main_rank):
        pool = cfg.prompts_per_step * (cfg.dynamic_sampling or 1)  # dynamic sampling keeps the informative part
        batch = batch_for_step(prompts, step, pool, cfg.seed)[rank::world]
        stats = trainer.step(batch)
        stats.update(reward.last_log)
        stats["episode"] = (step + 1) * cfg.prompts_per_step * cfg.samples_per_prompt  # responses so far (TRL's name)
        samples = [s for part in distributed.all_gather_objects(trainer.last_samples) for s in part]
        if main_rank:
            with (run_dir / "samples.jsonl").open("a") as f:
                for sample in samples:
                    f.write(json.dumps({"step": step + 1, **sample}, ensure_ascii=False) + "\n")
        tracking.log(stats, step + 1)  # metrics.jsonl and every tracker (rank 0)
        if (step + 1) % cfg.save_steps == 0 or step + 1 == cfg.steps:
            save_checkpoint(run_dir, step + 1, trainer, mixer.state_dict(), cfg.save_total_limit)
    final = save_policy(cfg, run_dir, trainer)
    tracking.finish()
    if main_rank:
        curve = plot_reward_curve(run_dir)
        print(f"PPO done: policy in {final}; metrics in {run_dir / 'metrics.jsonl'}; curve in {curve}")
    return final
