"""The PPO stage in order: models, prompts and reward (every check before anything is written, the
reward model's sanity suite among them) → run folder → resume → steps (rollout → score → advantages →
update; samples and metrics logged, checkpoints; with a gold reward, its curve and the best-by-gold
policy, and a stop when it falls while the proxy rises) → the final policy → its reward curve."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from tqdm.auto import tqdm

from common import distributed
from common.config import ConfigError, to_dict
from common.data import DataError, batch_for_step
from common.data.prompts import drop_long_prompts, load_prompts
from common.models import load_model_and_tokenizer, save_model_folder
from common.models.precision import resolve_precision
from common.rewards.ensemble import load_reward_models, member_folders, scorer_members
from common.rewards.mixer import RewardMixer, load_domains
from common.runs import FINAL, open_run_dir, publish
from common.stage import rank_seed, seed_everything
from common.timing import CLOCK
from common.tracking import Tracking
from common.tracking.provenance import read_provenance
from common.training import record_adapter_base
from common.training.checkpoints import resume
from common.training.engines import ds_config, inference_module
from ppo.config import PPOStageConfig
from ppo.gold import GOLD_BEST, GOLD_FILE, GoldCurve
from ppo.models import build_critic
from ppo.plot import plot_reward_curve
from ppo.sanity import check_reward_sanity
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
    scorer, gold, sanity = judges(cfg, prompts, ds)
    critic = None
    if cfg.value_model == "separate" and cfg.uses_critic:  # the critic-free estimators load no value model
        critic_spec = cfg.critic or (member_folders(cfg.reward_model)[0] if cfg.reward_model else cfg.policy)
        critic = build_critic(critic_spec, zero_head=critic_spec == cfg.policy, freeze_layers=cfg.critic_freeze_layers)
    mixer = RewardMixer(domains, rm_saved_stats=cfg.reward_norm == "reward_model",
                        components=tuple(cfg.reward_components) if cfg.reward_components else None,
                        strict_constraints=cfg.constraint_scoring == "strict")
    reward = MixedReward(mixer, scorer, gold)
    return PPOTrainer(cfg, policy, tokenizer, critic, reward, ds), prompts, mixer, reward, sanity


def judges(cfg: PPOStageConfig, prompts, ds: dict | None):
    """(the reward model or ensemble PPO optimises, the gold reward model or None, the proxy's sanity
    figures): the proxy checked by its sanity suite, the gold refused when it shares a member with it."""
    scorer = gold = None
    sanity: dict = {}
    if cfg.reward_model:
        scorer = load_reward_models(cfg.reward_model, cfg.reward_combine, cfg.reward_combine_coef)
        for member in scorer_members(scorer):
            member.model = inference_module(member.model, ds)
        sanity = check_reward_sanity(cfg.reward_model, scorer, prompts, cfg.reward_sanity_floor)
    if cfg.gold_reward_model:
        shared = ({os.path.realpath(f) for f in member_folders(cfg.gold_reward_model)}
                  & {os.path.realpath(f) for f in member_folders(cfg.reward_model or [])})
        if shared:
            raise ConfigError(f"gold_reward_model shares {', '.join(sorted(shared))} with reward_model: the gold must be "
                              "a reward model PPO does not optimise (e.g. an ensemble member left out of reward_model)")
        gold = load_reward_models(cfg.gold_reward_model, cfg.reward_combine, cfg.reward_combine_coef)
        for member in scorer_members(gold):
            member.model = inference_module(member.model, ds)
    return scorer, gold, sanity


def save_policy(cfg: PPOStageConfig, run_dir: Path, trainer: PPOTrainer, name: str = FINAL,
                extra_files: dict | None = None) -> Path:
    """The trained policy as <run>/<name>/ (model/, or gold-best/): a LoRA adapter naming its base, or
    full weights, with `extra_files` (file name → JSON-able). Every rank calls this (ZeRO-3 gathers the
    weights); rank 0 writes."""
    final, tmp = run_dir / name, run_dir / (name + ".tmp")
    adapter = cfg.finetune != "full"  # lora, qlora: the adapter alone
    params = [p for p in trainer.policy.parameters() if p.requires_grad] if adapter else None
    with trainer.actor.gathered(params):
        if distributed.is_main_process():
            if adapter:
                shutil.rmtree(tmp, ignore_errors=True)
                trainer.policy.save_pretrained(tmp)
                trainer.tokenizer.save_pretrained(tmp)
                record_adapter_base(tmp, cfg.policy)
            else:
                save_model_folder(trainer.policy, trainer.tokenizer, tmp)
            for file, content in (extra_files or {}).items():
                (tmp / file).write_text(json.dumps(content, indent=2))
            publish(tmp, final)
    distributed.barrier()
    return final


def run(cfg: PPOStageConfig, run_dir: Path) -> Path:
    main_rank = distributed.is_main_process()
    trainer, prompts, mixer, reward, sanity = build(cfg)
    if main_rank:
        open_run_dir(run_dir, cfg)
        if sanity:
            (run_dir / "reward_sanity.json").write_text(json.dumps(sanity, indent=2, ensure_ascii=False))
    distributed.barrier()
    seed_everything(rank_seed(cfg.seed))  # each rank samples differently
    curve = GoldCurve()
    start = resume(cfg, run_dir, lambda checkpoint: load_checkpoint(checkpoint, trainer, mixer, curve))
    tracking = Tracking(cfg, run_dir, to_dict(cfg), read_provenance(run_dir), start_step=start)
    # a run killed after its gold stop's checkpoint stops again at once
    stopped_at = curve.steps[-1] if cfg.gold_stop and curve.steps and curve.should_stop(cfg.gold_stop) else None
    end = cfg.steps if stopped_at is None else start

    rank, world = distributed.rank(), distributed.world_size()
    for step in tqdm(range(start, end), initial=start, total=cfg.steps, desc="PPO", disable=not main_rank):
        pool = cfg.prompts_per_step * (cfg.dynamic_sampling or 1)  # dynamic sampling keeps the informative part
        batch = batch_for_step(prompts, step, pool, cfg.seed)[rank::world]
        stats = trainer.step(batch)
        for phase, key in (("rollout", "time/generate"), ("score", "time/score"), ("update", "time/train")):
            CLOCK.add(phase, stats[key])
        stats.update(reward.last_log)
        stats["episode"] = (step + 1) * cfg.prompts_per_step * cfg.samples_per_prompt  # responses so far (TRL's name)
        samples = [s for part in distributed.all_gather_objects(trainer.last_samples) for s in part]
        if main_rank:
            with (run_dir / "samples.jsonl").open("a") as f:
                for sample in samples:
                    f.write(json.dumps({"step": step + 1, **sample}, ensure_ascii=False) + "\n")
        stop = watch_gold(cfg, run_dir, trainer, curve, stats, step + 1) if cfg.gold_reward_model else False
        tracking.log(stats, step + 1)  # metrics.jsonl and every tracker (rank 0)
        if (step + 1) % cfg.save_steps == 0 or step + 1 == cfg.steps or stop:
            with CLOCK.phase("save"):
                save_checkpoint(run_dir, step + 1, trainer, mixer.state_dict(), cfg.save_total_limit, curve)
        if stop:
            stopped_at = step + 1
            break
    if cfg.gold_stop:  # the best-by-gold policy is the final model
        final = run_dir / FINAL
        if main_rank:
            publish(run_dir / GOLD_BEST, final)
        distributed.barrier()
    else:
        with CLOCK.phase("save"):
            final = save_policy(cfg, run_dir, trainer)
    tracking.finish()
    if main_rank:
        figure = plot_reward_curve(run_dir)
        print(f"PPO done: policy in {final}; metrics in {run_dir / 'metrics.jsonl'}; curve in {figure}")
        if cfg.gold_reward_model:
            (run_dir / GOLD_FILE).write_text(json.dumps(curve.record(stopped_at), indent=2))
            print(gold_line(curve, stopped_at, bool(cfg.gold_stop), cfg.steps))
    return final


def watch_gold(cfg: PPOStageConfig, run_dir: Path, trainer: PPOTrainer, curve: GoldCurve, stats: dict, step: int) -> bool:
    """Add the step's gold and proxy scores to the curve (and `gold/best_step` to `stats`); with
    `gold_stop`, save the policy at a new best and → whether to stop. The figures are the same on
    every rank, so every rank decides alike."""
    proxy = stats.get("proxy/score", stats["objective/scores"])
    new_best, stop = curve.observe(step, stats["gold/score"], proxy, cfg.gold_stop)
    stats["gold/best_step"] = curve.best_step
    if new_best and cfg.gold_stop:
        save_policy(cfg, run_dir, trainer, GOLD_BEST, {"gold_best.json": {"step": step, "gold": stats["gold/score"]}})
    return stop


def gold_line(curve: GoldCurve, stopped_at: int | None, kept_best: bool, steps: int) -> str:
    """The summary's line on the gold reward: where it peaked, whether the run stopped, which step
    the final model is."""
    record = curve.record(stopped_at)
    where = (f"stopped at step {stopped_at} of {steps}: the gold score fell while the proxy rose"
             if stopped_at else f"ran all {steps} steps")
    model = f"the final model is step {record['best_step']}'s (best by gold)" if kept_best else \
        f"the final model is step {steps}'s"
    return (f"gold reward: best {record['best_gold']:+.3f} at step {record['best_step']} (proxy {record['proxy_at_best']:+.3f}"
            f"), last {record['gold'][-1]:+.3f} (proxy {record['proxy'][-1]:+.3f}); {where}; {model} ({GOLD_FILE})")
