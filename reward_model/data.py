"""Reward-model data: read sources, drop repeats, split by prompt, mix by weight, tokenize.

Each dataset row is one preference group: `input_ids` (K token lists), `ranks` (K),
`scores` (K, 0 when absent), `margin` (0 when absent), `domain`, `lengths` (K: each response's
tokens, uncut — what ODIN's length head and the length-correlation figures read).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from datasets import Dataset
from tqdm.auto import tqdm

from common.data.hygiene import HygieneReport
from common.data.preferences import PreferenceGroup, prepare_groups
from common.rewards.scorer import encode_response
from reward_model import anchors
from reward_model.config import RMStageConfig


@dataclass
class PreparedPreferences:
    train: Dataset
    validation: Dataset | None
    report: HygieneReport
    validation_groups: list[PreferenceGroup] = field(default_factory=list)  # untokenized: the sanity suite's source


def response_tokens(tokenizer, response: str) -> int:
    """Tokens of the reply alone: the length L(y) that ρ(reward, length) is measured against."""
    return len(tokenizer(response, add_special_tokens=False)["input_ids"])


def tokenize(groups: list[PreferenceGroup], tokenizer, max_length: int, desc: str) -> Dataset:
    rows = {"input_ids": [], "ranks": [], "scores": [], "margin": [], "domain": [], "lengths": []}
    for g in tqdm(groups, desc=desc, mininterval=1.0):
        rows["input_ids"].append([encode_response(tokenizer, g.prompt, r, max_length) for r in g.responses])
        rows["ranks"].append(g.ranks)
        rows["scores"].append([float(s) for s in g.scores] if g.scores else [0.0] * len(g.responses))
        rows["margin"].append(g.margin or 0.0)
        rows["domain"].append(g.domain)
        rows["lengths"].append([response_tokens(tokenizer, r) for r in g.responses])
    return Dataset.from_dict(rows)


def read_groups(cfg: RMStageConfig) -> tuple[list[PreferenceGroup], list[PreferenceGroup], HygieneReport]:
    """Read, clean, split by prompt and mix (`common.data.preferences.prepare_groups`) → (train,
    validation, report), with anchor pairs (`reward_model.anchors`) added to the training split when
    the recipe asks; raises DataError (file:line) before any output exists."""
    train, val, report = prepare_groups(cfg.data, cfg.val_fraction, cfg.seed, cfg.max_train_groups, cfg.val_split)
    added = anchors.anchor_groups(train, cfg.anchors, cfg.anchor_share, cfg.seed)
    if added:
        report.steps.append({"step": "anchor pairs added", "in": len(train), "kept": len(train) + len(added),
                             "dropped": 0, "added": anchors.counts(added)})
    return train + added, val, report


def tokenized(cfg: RMStageConfig, tokenizer, train: list[PreferenceGroup], val: list[PreferenceGroup],
              report: HygieneReport) -> PreparedPreferences:
    return PreparedPreferences(
        tokenize(train, tokenizer, cfg.max_length, "tokenizing train"),
        tokenize(val, tokenizer, cfg.max_length, "tokenizing validation") if val else None,
        report,
        val,
    )


def prepare(cfg: RMStageConfig, tokenizer) -> PreparedPreferences:
    """`read_groups`, then tokenize."""
    return tokenized(cfg, tokenizer, *read_groups(cfg))
