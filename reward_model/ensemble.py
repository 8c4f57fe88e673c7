"""`ensemble: n` — n reward models that differ by their data, not only by their seed.

Member i trains on a bootstrap resample of the training groups (as many groups as there are,
drawn with replacement, seeded by (seed, i)) with seed + i for its head and data order; every
member validates on the same held-out prompts. Layout of the run folder:

    <run>/member-<i>/           a whole reward-model run (checkpoints, metrics, summary.json)
    <run>/member-<i>/model/     its reward model (sanity.json included): usable on its own, e.g. as
                                PPO's held-out gold reward while the others are optimised
    <run>/model/                the ensemble folder: ensemble.json naming the members, and the
                                sanity figures of their mean; written last, so a finished
                                ensemble is refused like a finished model and `make ppo` names it

A stopped ensemble resumes: finished members are kept, the member in progress resumes from its
checkpoint. From an ensemble folder (`model` names one: the closed loop's next round) member i
continues from member i.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import replace
from pathlib import Path

from common import distributed
from common.config import ConfigError
from common.data.preferences import PreferenceGroup
from common.rewards.ensemble import ENSEMBLE_FILE, EnsembleScorer, is_ensemble_folder, member_folders
from common.rewards.sanity import SANITY_FILE, format_sanity, run_suite
from common.rewards.scorer import load_reward_scorer
from common.runs import FINAL, open_run_dir, publish
from common.stage import seed_everything
from reward_model import data as rm_data
from reward_model.config import RMStageConfig
from reward_model.sanity import VALIDATION_SOURCE, good_replies, subset


def bootstrap_groups(groups: list[PreferenceGroup], seed: str | int) -> list[PreferenceGroup]:
    """len(groups) groups drawn with replacement (seeded): a group may come twice, or not at all."""
    rng = random.Random(seed)
    return [groups[rng.randrange(len(groups))] for _ in groups]


def pair_set_hash(groups: list[PreferenceGroup]) -> str:
    """A hash of the multiset of groups a member trains on (order aside, repeats counted)."""
    keys = sorted(json.dumps([g.prompt, g.responses, g.ranks], ensure_ascii=False) for g in groups)
    return hashlib.blake2b("\n".join(keys).encode(), digest_size=16).hexdigest()


def member_starts(cfg: RMStageConfig) -> list[str]:
    """What each member starts from: `model` for all, or member i of an ensemble folder."""
    if not is_ensemble_folder(cfg.model):
        return [cfg.model] * cfg.ensemble
    starts = member_folders(cfg.model)
    if len(starts) != cfg.ensemble:
        raise ConfigError(f"model: {cfg.model} is an ensemble of {len(starts)} members but ensemble is {cfg.ensemble}")
    return starts


def run_ensemble(cfg: RMStageConfig, run_dir: Path) -> Path:
    from reward_model.run import held_out_report, train_one
    from reward_model.train import build_model

    starts = member_starts(cfg)
    train, val, report = rm_data.read_groups(cfg)  # raises on a bad row, before anything is written
    if distributed.is_main_process():
        print("data hygiene:\n" + report.table(), flush=True)
        open_run_dir(run_dir, cfg, report)
    distributed.barrier()
    summaries = []
    for i, start in enumerate(starts):
        member_dir = run_dir / f"member-{i}"
        sample = bootstrap_groups(train, f"{cfg.seed}:{i}")
        info = {"member": i, "train_groups": len(sample), "distinct_train_groups": len({id(g) for g in sample}),
                "train_pairs_hash": pair_set_hash(sample)}
        if (member_dir / FINAL).is_dir():  # finished before a stop: kept
            summaries.append(json.loads((member_dir / "summary.json").read_text()))
            continue
        mcfg = replace(cfg, ensemble=1, model=start, seed=cfg.seed + i, run_name=f"{cfg.run_name}/member-{i}")
        seed_everything(mcfg.seed)
        model, tokenizer = build_model(mcfg)
        data = rm_data.tokenized(mcfg, tokenizer, sample, val, report)
        if distributed.is_main_process():
            open_run_dir(member_dir, mcfg, report)
        distributed.barrier()
        _, summary = train_one(mcfg, member_dir, model, tokenizer, data, info)
        summaries.append(summary)
        if distributed.is_main_process():
            print(f"member {i} ({info['distinct_train_groups']} distinct of {len(sample)} resampled groups):\n"
                  + held_out_report(summary), flush=True)
    final = run_dir / FINAL
    if distributed.is_main_process():
        tmp = run_dir / (FINAL + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        members = [f"../member-{i}/{FINAL}" for i in range(len(starts))]
        (tmp / ENSEMBLE_FILE).write_text(json.dumps({"members": members, "resampling": "bootstrap by group",
                                                     "train_pairs_hashes": [s["train_pairs_hash"] for s in summaries]},
                                                    indent=2))
        sanity = ensemble_sanity(cfg, [run_dir / f"member-{i}" / FINAL for i in range(len(starts))], val)
        if sanity is not None:
            (tmp / SANITY_FILE).write_text(json.dumps(sanity, indent=2, ensure_ascii=False))
        publish(tmp, final)
        (run_dir / "summary.json").write_text(json.dumps({"members": summaries, "sanity": sanity}, indent=2, default=str))
        if sanity is not None:
            print("the ensemble (members' mean):\n" + format_sanity(sanity))
        print(f"reward-model ensemble done: {final} ({len(starts)} members)")
    distributed.barrier()
    return final


def ensemble_sanity(cfg: RMStageConfig, folders: list[Path], val: list[PreferenceGroup]) -> dict | None:
    """The sanity suite on the members' mean score (each member's own figures are in its folder)."""
    prompts, goods = good_replies(val)
    if cfg.sanity_prompts == 0 or len(prompts) < 2:
        return None
    prompts, goods = subset(prompts, goods, cfg.sanity_prompts, cfg.seed)
    scorer = EnsembleScorer([load_reward_scorer(str(f), device=distributed.device()) for f in folders], "mean")
    return {"combine": "mean", **run_suite(scorer, prompts, goods, VALIDATION_SOURCE, 2 * cfg.batch_size, cfg.seed)}
