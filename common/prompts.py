"""Prompt sets (PPO's training prompts, the evaluation stage's held-out prompts): JSONL rows
`{prompt, domain, reference?}` or HH dialogues (their first human turn).

`prompt` is text or chat messages ending with a user turn; `domain` names a file in
`configs/domains/`; `reference` (optional) is an answer the accuracy component compares with.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Literal

from common.config import param
from common.data import DataError, Message, parse_hh_dialogue, parse_prompt, require, unrecognised
from common.hygiene import mix_by_weight
from common.preferences import read_rows

log = logging.getLogger(__name__)


@dataclass
class PromptSource:
    """One prompt file and its share of the prompt mix."""

    path: str = param(help="JSONL rows {prompt, domain, reference?}, or HH dialogues (first human turn)")
    format: Literal["auto", "prompts", "hh"] = param("auto", help="row shape")
    weight: float = param(1.0, help="share of this file's prompts: 0.5 = a random half, 2.0 = twice")


@dataclass
class Prompt:
    messages: list[Message]  # ends with a user turn
    domain: str
    reference: str | None
    where: str
    source: int = 0


def row_to_prompt(row: dict, fmt: str, where: str, domains: set[str]) -> Prompt:
    if fmt == "auto":
        fmt = "prompts" if "prompt" in row else "hh" if "chosen" in row else ""
        if not fmt:
            raise unrecognised(row, where, "'prompt' (+ 'domain', 'reference') or an HH 'chosen' dialogue")
    if fmt == "hh":
        require(row, ("chosen",), where)
        first = parse_hh_dialogue(row["chosen"], where)[0]
        return Prompt([first], row.get("domain") or "general", None, where)
    require(row, ("prompt",), where)
    messages = parse_prompt(row["prompt"], where)
    domain = row.get("domain") or "general"
    if domain not in domains:
        raise DataError(f"{where}: unknown domain '{domain}' (known: {', '.join(sorted(domains))})")
    reference = row.get("reference")
    if reference is not None and not isinstance(reference, str):
        raise DataError(f"{where}: 'reference' must be a string")
    return Prompt(messages, domain, reference, where)


def load_prompts(sources: list[PromptSource], domains: set[str], seed: int) -> list[Prompt]:
    """Every source's prompts, mixed by weight (a weight below 1 takes a random share, seeded)."""
    if not sources:
        raise DataError("no prompts: the recipe's 'prompts' list is empty")
    prompts = []
    for i, src in enumerate(sources):
        for where, row in read_rows(src.path):
            p = row_to_prompt(row, src.format, where, domains)
            p.source = i
            prompts.append(p)
    return mix_by_weight(prompts, [s.weight for s in sources], random.Random(seed))


def drop_long_prompts(prompts: list[Prompt], tokenizer, max_tokens: int) -> list[Prompt]:
    """Prompts longer than `max_tokens` (chat template applied) are skipped, with a warning."""
    kept, skipped = [], []
    for p in prompts:
        n = len(tokenizer.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=True, return_dict=False))
        (kept if n <= max_tokens else skipped).append(p)
    if skipped:
        log.warning(
            "skipped %d prompt(s) longer than max_prompt_tokens=%d: %s",
            len(skipped), max_tokens, ", ".join(p.where for p in skipped[:5]),
        )
    return kept
