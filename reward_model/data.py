"""Reward-model data: read sources, drop repeats, split by prompt, mix by weight, tokenize.

Each dataset row is one preference group: `input_ids` (K token lists), `ranks` (K),
`scores` (K, 0 when absent), `margin` (0 when absent), `domain`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from dataclasses import dataclass

from datasets import Dataset
from tqdm.auto import tqdm

from common.data import DataError
from common.hygiene import HygieneReport, mix_by_weight, split_indices
from common.preferences import PreferenceGroup, read_preferences
from common.reward import encode_response
from reward_model.config import RMStageConfig

log = logging.getLogger(__name__)


@dataclass
class PreparedPreferences:
    train: Dataset
    validation: Dataset | None
    report: HygieneReport


def read_sources(cfg: RMStageConfig, report: HygieneReport) -> list[PreferenceGroup]:
    if not cfg.data:
        raise DataError("no data: the recipe's 'data' list is empty")
    groups: list[PreferenceGroup] = []
    unpaired: list[str] = []
    for i, src in enumerate(cfg.data):
        groups += read_preferences(src.path, src.format, source=i, unpaired=unpaired)
    report.add("read", len(groups) + len(unpaired), len(groups))
    if unpaired:
        log.warning("skipped %d dialogue pair(s) without a shared prompt: %s", len(unpaired), ", ".join(unpaired[:5]))
    return groups


def _key(obj) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode(), digest_size=16).hexdigest()


def clean(groups: list[PreferenceGroup], report: HygieneReport) -> list[PreferenceGroup]:
    before = len(groups)
    groups = [g for g in groups if all(r.strip() for r in g.responses) and all(m["content"].strip() for m in g.prompt)]
    report.add("empty prompt or response", before, len(groups))
    before = len(groups)
    groups = [g for g in groups if len(set(g.ranks)) > 1 and len(set(g.responses)) > 1]
    report.add("all tied or identical responses", before, len(groups))
    seen, kept = set(), []
    for g in groups:
        key = _key([g.prompt, g.responses, g.ranks, g.meta.get("annotator")])
        if key not in seen:
            seen.add(key)
            kept.append(g)
    report.add("exact duplicates", len(groups), len(kept))
    return kept


def split_by_prompt(groups: list[PreferenceGroup], val_fraction: float, seed: int):
    """Held-out prompts are never trained on: every group of a prompt goes to the same side."""
    keys = [_key(g.prompt) for g in groups]
    prompts = sorted(set(keys))
    _, val_idx = split_indices(len(prompts), val_fraction, seed)
    held_out = {prompts[i] for i in val_idx}
    train = [g for g, k in zip(groups, keys) if k not in held_out]
    val = [g for g, k in zip(groups, keys) if k in held_out]
    return train, val


def tokenize(groups: list[PreferenceGroup], tokenizer, max_length: int, desc: str) -> Dataset:
    rows = {"input_ids": [], "ranks": [], "scores": [], "margin": [], "domain": []}
    for g in tqdm(groups, desc=desc, mininterval=1.0):
        rows["input_ids"].append([encode_response(tokenizer, g.prompt, r, max_length) for r in g.responses])
        rows["ranks"].append(g.ranks)
        rows["scores"].append([float(s) for s in g.scores] if g.scores else [0.0] * len(g.responses))
        rows["margin"].append(g.margin or 0.0)
        rows["domain"].append(g.domain)
    return Dataset.from_dict(rows)


def prepare(cfg: RMStageConfig, tokenizer) -> PreparedPreferences:
    """Everything above; raises DataError (file:line) before any output exists."""
    report = HygieneReport()
    groups = read_sources(cfg, report)
    groups = clean(groups, report)
    train, val = split_by_prompt(groups, cfg.val_fraction, cfg.seed)
    report.add("validation split (by prompt)", len(groups), len(train))
    rng = random.Random(cfg.seed)
    mixed = mix_by_weight(train, [src.weight for src in cfg.data], rng)
    report.add("weighted mix", len(train), len(mixed))
    if cfg.max_train_groups is not None and len(mixed) > cfg.max_train_groups:
        report.add("max_train_groups", len(mixed), cfg.max_train_groups)
        mixed = mixed[: cfg.max_train_groups]
    if not mixed:
        raise DataError("no training preferences left after cleaning; see the report above")
    return PreparedPreferences(
        tokenize(mixed, tokenizer, cfg.max_length, "tokenizing train"),
        tokenize(val, tokenizer, cfg.max_length, "tokenizing validation") if val else None,
        report,
    )
