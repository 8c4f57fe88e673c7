"""python -m reward_model.sanity --model RM [RM …] --data FILE [--max_prompts N] [--save] [--json]

Runs the reward-model sanity suite (`common/rewards/sanity.py`) on any reward model, an ensemble
folder, or several folders combined: for each prompt of FILE with a good reply the model must score
that reply above the empty reply, a deflection, a refusal, another prompt's reply, the prompt echoed
back, and the reply cut mid-sentence. FILE holds prompts with a `reference` answer (the evaluation's
held-out files) or preferences (pairs, rankings, HH: the best reply of each group is the good one).
`--save` writes the figures into the model folder as `sanity.json`, where PPO reads them.

The reward-model stage runs the same suite on its validation prompts after training (`stage_sanity`).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from common.data import DataError, Message, parse_prompt
from common.data.preferences import PREFERENCE_FORMATS, PreferenceGroup, read_preferences, read_rows
from common.rewards.ensemble import COMBINES, load_reward_models
from common.rewards.sanity import SANITY_FILE, format_sanity, run_suite
from common.stage import run_stage

VALIDATION_SOURCE = "validation prompts, best reply"


def first_groups(groups: list[PreferenceGroup]) -> list[PreferenceGroup]:
    """Each distinct prompt's first group, in order."""
    seen, firsts = set(), []
    for g in groups:
        key = json.dumps(g.prompt, sort_keys=True, ensure_ascii=False)
        if key not in seen:
            seen.add(key)
            firsts.append(g)
    return firsts


def best_reply(group: PreferenceGroup) -> str:
    return group.responses[group.ranks.index(min(group.ranks))]


def good_replies(groups: list[PreferenceGroup]) -> tuple[list[list[Message]], list[str]]:
    """(prompts, good replies): each distinct prompt once, with the best-ranked reply of its first group."""
    firsts = first_groups(groups)
    return [g.prompt for g in firsts], [best_reply(g) for g in firsts]


def subset(prompts: list, goods: list, limit: int | None, seed: int) -> tuple[list, list]:
    """At most `limit` of the prompts (a seeded draw, in their order), with their good replies."""
    if limit is None or len(prompts) <= limit:
        return prompts, goods
    keep = sorted(random.Random(seed).sample(range(len(prompts)), limit))
    return [prompts[i] for i in keep], [goods[i] for i in keep]


def read_good_replies(path: str, fmt: str = "auto") -> tuple[list[list[Message]], list[str], str]:
    """(prompts, good replies, source) from prompt rows with a `reference`, or from preferences."""
    rows = list(read_rows(path))
    if rows and "reference" in rows[0][1]:
        prompts, goods = [], []
        for where, row in rows:
            if isinstance(row.get("reference"), str) and row["reference"].strip():
                prompts.append(parse_prompt(row.get("prompt"), where))
                goods.append(row["reference"])
        source = f"{path}, reference answers"
    else:
        prompts, goods = good_replies(read_preferences(path, fmt))
        source = f"{path}, best reply"
    if len(prompts) < 2:
        raise DataError(f"{path}: the sanity suite needs at least 2 prompts with a good reply, found {len(prompts)}")
    return prompts, goods, source


def stage_sanity(cfg, model, tokenizer, groups: list[PreferenceGroup], mean: float, std: float) -> dict | None:
    """The suite on the just-trained model and its validation groups (up to cfg.sanity_prompts
    prompts); None when it is off or there is no validation split. Every rank runs it alike (a
    ZeRO-3 model's forward passes need them all)."""
    from common import distributed
    from common.models.precision import autocast
    from common.rewards.scorer import RewardScorer

    prompts, goods = good_replies(groups)
    if cfg.sanity_prompts == 0 or len(prompts) < 2:
        return None
    prompts, goods = subset(prompts, goods, cfg.sanity_prompts, cfg.seed)
    scorer = RewardScorer(model, tokenizer, cfg.max_length, mean, std)
    with autocast(cfg.precision, distributed.device()):
        return run_suite(scorer, prompts, goods, VALIDATION_SOURCE, batch_size=2 * cfg.batch_size, seed=cfg.seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reward_model.sanity", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, nargs="+",
                        help="reward model folder, an ensemble folder, or several folders (combined by --combine)")
    parser.add_argument("--data", required=True, help="prompts with references, or a preference file (JSONL, .gz)")
    parser.add_argument("--format", default="auto", choices=PREFERENCE_FORMATS, help="preference row shape")
    parser.add_argument("--combine", default="mean", choices=COMBINES, help="how several members' scores combine")
    parser.add_argument("--combine_coef", type=float, default=1.0, help="mean_minus_std's coefficient")
    parser.add_argument("--max_prompts", type=int, default=None, help="a seeded subset of at most this many prompts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--save", action="store_true", help=f"write the figures into the model folder as {SANITY_FILE}")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    if args.save and len(args.model) != 1:
        raise DataError("--save writes into one model folder: name one folder (or one ensemble folder)")
    prompts, goods, source = read_good_replies(args.data, args.format)
    prompts, goods = subset(prompts, goods, args.max_prompts, args.seed)
    scorer = load_reward_models(args.model if len(args.model) > 1 else args.model[0], args.combine, args.combine_coef)
    figures = run_suite(scorer, prompts, goods, source, args.batch_size, args.seed)
    if args.save:
        (Path(args.model[0]) / SANITY_FILE).write_text(json.dumps(figures, indent=2, ensure_ascii=False))
    print(json.dumps(figures, ensure_ascii=False) if args.json else format_sanity(figures))


if __name__ == "__main__":
    sys.exit(run_stage(main))
