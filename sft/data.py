"""SFT data: read every source, clean, split, mix by weight → `datasets` with a `messages` column.

Order of steps (each reported with counts): read → empty turns → no assistant reply →
exact duplicates → near-duplicates → token length → train/validation split → weighted mix.
Deduplication runs across sources, before weighting, so an up-weighted file repeats rows on
purpose while accidental repeats are removed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from datasets import Dataset
from tqdm.auto import tqdm

from common.data import DataError, Message, read_chats
from common.data.hygiene import HygieneReport, exact_duplicates, mix_by_weight, near_duplicates, split_indices
from sft.config import SFTStageConfig


@dataclass
class Chat:
    source: int  # index into cfg.data
    where: str  # "file:line", for messages about this row
    messages: list[Message]

    def text(self) -> str:
        return "\n".join(f"{m['role']}: {m['content']}" for m in self.messages)


@dataclass
class PreparedData:
    train: Dataset
    validation: Dataset | None
    report: HygieneReport


def read_sources(cfg: SFTStageConfig) -> list[Chat]:
    if not cfg.data:
        raise DataError("no data: the recipe's 'data' list is empty")
    chats = []
    for i, src in enumerate(cfg.data):
        for line_no, messages in read_chats(src.path, src.format):
            chats.append(Chat(i, f"{src.path}:{line_no}", messages))
    return chats


def _keep(chats: list[Chat], indices: list[int], report: HygieneReport, step: str) -> list[Chat]:
    report.add(step, len(chats), len(indices))
    return [chats[i] for i in indices]


def clean(chats: list[Chat], cfg: SFTStageConfig, tokenizer, report: HygieneReport) -> list[Chat]:
    h = cfg.hygiene
    n = len(chats)
    chats = _keep(chats, [i for i in range(n) if all(m["content"].strip() for m in chats[i].messages)], report, "empty turns")
    n = len(chats)
    has_reply = [i for i in range(n) if any(m["role"] == "assistant" for m in chats[i].messages)]
    chats = _keep(chats, has_reply, report, "no assistant reply")
    if h.exact_dedup:
        chats = _keep(chats, exact_duplicates([c.text() for c in chats]), report, "exact duplicates")
    if h.near_dedup:
        chats = _keep(chats, near_duplicates([c.text() for c in chats], h.near_dup_threshold), report, "near-duplicates")
    lengths = [
        len(tokenizer.apply_chat_template(c.messages, tokenize=True, return_dict=False))
        for c in tqdm(chats, desc="token lengths", leave=False, mininterval=1.0)
    ]
    in_range = [i for i, n_tok in enumerate(lengths) if h.min_tokens <= n_tok <= h.max_tokens]
    return _keep(chats, in_range, report, f"length {h.min_tokens}..{h.max_tokens} tokens")


def prepare(cfg: SFTStageConfig, tokenizer) -> PreparedData:
    """Everything above, raising DataError before any output exists."""
    report = HygieneReport()
    chats = read_sources(cfg)
    report.add("read", len(chats), len(chats))
    chats = clean(chats, cfg, tokenizer, report)
    if len(chats) < 2:
        raise DataError(f"only {len(chats)} chat(s) left after cleaning; see the hygiene report above")
    train_idx, val_idx = split_indices(len(chats), cfg.hygiene.val_fraction, cfg.seed)
    report.add("validation split", len(chats), len(train_idx))
    rng = random.Random(cfg.seed)
    train = mix_by_weight([chats[i] for i in train_idx], [src.weight for src in cfg.data], rng)
    report.add("weighted mix", len(train_idx), len(train))
    if cfg.hygiene.max_train_samples is not None and len(train) > cfg.hygiene.max_train_samples:
        before = len(train)
        train = train[: cfg.hygiene.max_train_samples]
        report.add("max_train_samples", before, len(train))
    if not train:
        raise DataError("no training chats left after mixing")

    def to_dataset(rows: list[Chat]) -> Dataset:
        return Dataset.from_dict({"messages": [c.messages for c in rows]})

    validation = to_dataset([chats[i] for i in val_idx]) if val_idx else None
    return PreparedData(to_dataset(train), validation, report)
