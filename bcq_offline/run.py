"""The BCQ stage in order: the logged records, G (cloned from them when asked) and the Q network
(every check before anything is written) → run folder → resume → steps → the final model (`model/`:
Q's trained weights and G named as its base) → the held-out evaluation of what was saved."""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

from tqdm.auto import tqdm

from bcq_offline.behaviour import clone_behaviour
from bcq_offline.config import BCQStageConfig
from bcq_offline.data import drop_long_records, load_logged, split_by_prompt
from bcq_offline.evaluate import evaluate, summary_line
from bcq_offline.model import build_bcq_model
from bcq_offline.saving import load_bcq, save_bcq
from bcq_offline.state import load_checkpoint, save_checkpoint
from bcq_offline.trainer import BCQTrainer, encode_records
from common import distributed
from common.config import to_dict
from common.data import DataError, batch_for_step
from common.models import load_model_and_tokenizer, save_model_folder
from common.models.precision import autocast, resolve_precision
from common.pipeline import EVAL_FILE, FINAL
from common.planning.measure import release_memory
from common.rewards.ensemble import load_reward_models
from common.rewards.mixer import RewardMixer, Sample, load_domains
from common.runs import open_run_dir
from common.timing import CLOCK
from common.tracking import Tracking, flatten
from common.tracking.provenance import read_provenance
from common.training.checkpoints import resume
from common.training.engines import ds_config

log = logging.getLogger("bcq_offline")
BEHAVIOUR = "behaviour_model"  # <run>/behaviour_model/: G after behaviour cloning


def build(cfg: BCQStageConfig, run_dir: Path):
    """Data, models and trainer, before anything is written."""
    lm, tokenizer = load_model_and_tokenizer(cfg.model)
    records, skipped = load_logged(cfg.data, cfg.seed)
    if skipped:
        log.warning("skipped %d HH row(s) whose two dialogues do not share a prompt", skipped)
    domains = load_domains(cfg.domains_dir)
    for r in records:
        if r.domain not in domains:
            raise DataError(f"{r.where}: unknown domain '{r.domain}' (known: {', '.join(sorted(domains))})")
    records = drop_long_records(records, tokenizer, cfg.max_prompt_tokens)
    scorer = load_reward_models(cfg.reward_model, cfg.reward_combine, cfg.reward_combine_coef) if cfg.reward_model else None
    if cfg.reward_source in ("reward_model", "mixer"):
        recompute_rewards(records, cfg.reward_source, scorer, domains, tokenizer)
    train, held_out = split_by_prompt(records, cfg.eval_fraction, cfg.seed)
    if len(train) < cfg.batch_size:
        raise DataError(f"only {len(train)} training records (batch_size {cfg.batch_size})")
    behaviour_nll, g_spec = None, cfg.model
    if cfg.behaviour_steps:
        g_folder = run_dir / BEHAVIOUR
        if (g_folder / "config.json").is_file():  # a resumed run: G was cloned before
            lm, _ = load_model_and_tokenizer(str(g_folder))
        else:
            encode = partial(encode_records, tokenizer, max_response_tokens=cfg.max_response_tokens)
            lm, behaviour_nll = clone_behaviour(lm, encode, train, cfg.behaviour_steps, cfg.batch_size, cfg.behaviour_lr,
                                                cfg.lora, cfg.seed)
            log.info("behaviour cloning: response NLL %.3f → %.3f", behaviour_nll[0], behaviour_nll[-1])
            if distributed.is_main_process():  # G is part of the result: model/ names it as its base
                save_model_folder(lm, tokenizer, g_folder)
            distributed.barrier()
        g_spec = str(g_folder)
    model = build_bcq_model(lm, cfg.q_trunk, cfg.q_init_scale, cfg.lora, cfg.q_head)
    ds = None
    if cfg.deepspeed:
        bf16 = resolve_precision(cfg.precision) == "bf16"
        ds = ds_config(cfg.deepspeed, cfg.batch_size // distributed.world_size(), cfg.max_grad_norm, bf16,
                       lm.config.hidden_size)
    return BCQTrainer(cfg, model, tokenizer, ds), train, held_out, scorer, domains, behaviour_nll, g_spec


def recompute_rewards(records, source: str, scorer, domains, tokenizer) -> None:
    """In place: the reward model's normalized score, or the per-domain mixed reward (accuracy = that
    score when a reward model is given, else the logged reward; diversity across a prompt's logged
    responses; efficiency against the domain's token budget)."""
    scores = None
    if scorer is not None:
        scores = []
        for start in tqdm(range(0, len(records), 32), desc="scoring with the reward model",
                          disable=not distributed.is_main_process()):
            part = records[start : start + 32]
            scores += scorer([r.prompt for r in part], [r.response for r in part], normalize=True).tolist()
    if source == "reward_model":
        for r, s in zip(records, scores):
            r.reward = s
        return
    groups: dict[str, int] = {}
    samples = [
        Sample(response=r.response, domain=r.domain, group=groups.setdefault(repr(r.prompt), len(groups)),
               n_tokens=len(tokenizer(r.response, add_special_tokens=False)["input_ids"]),
               rm_score=scores[i] if scores is not None else r.reward)
        for i, r in enumerate(records)
    ]
    mixed, _ = RewardMixer(domains)(samples)
    for r, m in zip(records, mixed.tolist()):
        r.reward = m


def run(cfg: BCQStageConfig, run_dir: Path) -> Path:
    main_rank = distributed.is_main_process()
    trainer, train, held_out, scorer, domains, behaviour_nll, g_spec = build(cfg, run_dir)
    if main_rank:
        open_run_dir(run_dir, cfg)
        log.info("%d training records, %d held out", len(train), len(held_out))
        if behaviour_nll:
            (run_dir / "behaviour.json").write_text(json.dumps({"response_nll": behaviour_nll}))
    distributed.barrier()

    start = resume(cfg, run_dir, lambda checkpoint: load_checkpoint(checkpoint, trainer))
    tracking = Tracking(cfg, run_dir, to_dict(cfg), read_provenance(run_dir), start_step=start)

    rank, world = distributed.rank(), distributed.world_size()
    if trainer.cache is not None:  # every record this rank will visit, from step 0 (a resumed run caches the same)
        visits = [r for step in range(cfg.steps) for r in batch_for_step(train, step, cfg.batch_size, cfg.seed)[rank::world]]
        with CLOCK.phase("cache"):
            trainer.build_cache(visits, progress=main_rank)
    for step in tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="BCQ", disable=not main_rank):
        with CLOCK.phase("train"):
            stats = trainer.step(batch_for_step(train, step, cfg.batch_size, cfg.seed)[rank::world])
        tracking.log(stats, step + 1)  # metrics.jsonl and every tracker (rank 0)
        if (step + 1) % cfg.save_steps == 0 or step + 1 == cfg.steps:
            with CLOCK.phase("save"):
                save_checkpoint(run_dir, step + 1, trainer, cfg.save_total_limit)

    final = run_dir / FINAL
    lora = to_dict(cfg.lora)
    online = [p for p in trainer.model.parameters() if p.requires_grad]
    with trainer.q.gathered(online):
        if main_rank:
            meta = {"base": g_spec, "q_trunk": cfg.q_trunk, "q_head": cfg.q_head, "tau": cfg.tau, "lora": lora}
            save_bcq(trainer.model, trainer.tokenizer, meta, final)
    distributed.barrier()
    trainer = online = None  # the trained copy (its optimizer and target network too) goes before the saved one loads
    release_memory()
    if main_rank:
        model, tokenizer, _ = load_bcq(final)  # evaluate what was saved, whole, in this process
        with autocast(cfg.precision, distributed.device()), CLOCK.phase("evaluate"):
            report = evaluate(model, tokenizer, held_out, cfg, scorer, domains, cfg.eval_taus)
        (run_dir / EVAL_FILE).write_text(json.dumps(report, indent=2, ensure_ascii=False))
        figures = {f"eval/{k}": v for k, v in flatten(report).items() if isinstance(v, (int, float))}
        # the held-out figures beside the training curves (eval.json has them; metrics.jsonl keeps one row a step)
        tracking.log(figures, cfg.steps, metrics_file=False)
        tracking.summary(figures)
    tracking.finish()
    if main_rank:
        print(summary_line(report, final, run_dir))
    return final
