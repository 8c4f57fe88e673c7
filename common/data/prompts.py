"""Prompt sets (PPO's training prompts, the evaluation stage's held-out prompts): JSONL rows
`{prompt, domain, reference?, constraints?}`, HH dialogues (their first human turn) or GSM8K rows
(`{question, answer}`: the question, and the number after the answer's `####` as reference).

`prompt` is text or chat messages ending with a user turn; `domain` names a file in
`configs/domains/`; `reference` (optional) is an answer the accuracy component compares with;
`constraints` (optional) are instructions a rule checks (`common/rewards/verifiers`: e.g.
`[{"type": "word_count", "relation": "at_most", "n": 25}]`), scored by the `constraints` component.
A row may carry `lang` (en, zh) and `heldout_types` (it uses constraint types no training row has):
the evaluation stage reports its figures by both.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Literal

from common.config import param
from common.data import DataError, Message, parse_hh_dialogue, parse_prompt, require, unrecognised
from common.data.hygiene import mix_by_weight
from common.data.preferences import read_rows
from common.rewards.verifiers import validate_constraints

log = logging.getLogger(__name__)


@dataclass
class PromptSource:
    """One prompt file and its share of the prompt mix."""

    path: str = param(help="JSONL rows {prompt, domain, reference?}, HH dialogues (first human turn), or GSM8K rows")
    format: Literal["auto", "prompts", "hh", "gsm8k"] = param("auto", help="row shape")
    weight: float = param(1.0, help="share of this file's prompts: 0.5 = a random half, 2.0 = twice")
    rows: str | None = param(None, help="'start:stop' (Python slice, 0-based): only those rows of the file — "
                             "e.g. '0:7000' to train and '7000:' to evaluate on the rest")
    domain: str | None = param(None, help="domain of rows that name none (default: general; gsm8k: math)")
    instruction: str = param("", help="text appended to each prompt's last user turn (e.g. how to state the answer)")

    def __post_init__(self):
        if self.weight < 0:
            raise ValueError(f"weight must be ≥ 0, got {self.weight}")
        if self.rows is not None:
            row_slice(self.rows)


def row_slice(spec: str) -> slice:
    """'a:b', 'a:' or ':b' (non-negative integers) → slice(a, b); anything else is a ValueError."""
    parts = spec.split(":")
    if len(parts) != 2 or not all(p.strip().isdigit() or not p.strip() for p in parts):
        raise ValueError(f"rows must look like 'start:stop' (e.g. '0:7000' or '7000:'), got {spec!r}")
    start, stop = (int(p) if p.strip() else None for p in parts)
    if start is not None and stop is not None and stop <= start:
        raise ValueError(f"rows {spec!r} selects nothing: stop must be > start")
    return slice(start, stop)


@dataclass
class Prompt:
    messages: list[Message]  # ends with a user turn
    domain: str
    reference: str | None
    where: str
    source: int = 0
    constraints: list[dict] | None = None  # instructions a rule checks (common/rewards/verifiers)
    lang: str | None = None  # the row's language (en, zh), when it says
    heldout_types: bool = False  # the row uses constraint types that no training row has


def gsm8k_reference(answer, where: str) -> str:
    """The final number of a GSM8K worked answer ('… #### 72' → '72')."""
    if not isinstance(answer, str) or "####" not in answer:
        raise DataError(f"{where}: a GSM8K 'answer' must be text ending with '#### <number>'")
    final = answer.rsplit("####", 1)[1].strip().replace(",", "")
    if not final:
        raise DataError(f"{where}: nothing after '####' in 'answer'")
    return final


def row_to_prompt(row: dict, fmt: str, where: str, domains: set[str], default_domain: str | None = None,
                  instruction: str = "") -> Prompt:
    if fmt == "auto":
        fmt = "prompts" if "prompt" in row else "hh" if "chosen" in row else "gsm8k" if "question" in row else ""
        if not fmt:
            raise unrecognised(row, where, "'prompt' (+ 'domain', 'reference'), an HH 'chosen' dialogue, or GSM8K "
                                           "'question' + 'answer'")
    reference, constraints = None, None
    if fmt == "hh":
        require(row, ("chosen",), where)
        messages = [parse_hh_dialogue(row["chosen"], where)[0]]
    elif fmt == "gsm8k":
        require(row, ("question", "answer"), where)
        if not isinstance(row["question"], str) or not row["question"].strip():
            raise DataError(f"{where}: 'question' must be non-empty text")
        messages = [{"role": "user", "content": row["question"]}]
        reference = gsm8k_reference(row["answer"], where)
        default_domain = default_domain or "math"
    else:
        require(row, ("prompt",), where)
        messages = parse_prompt(row["prompt"], where)
        reference = row.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise DataError(f"{where}: 'reference' must be a string")
        constraints = row.get("constraints")
        if constraints is not None:
            validate_constraints(constraints, where)
    domain = row.get("domain") or default_domain or "general"
    if domain not in domains:
        raise DataError(f"{where}: unknown domain '{domain}' (known: {', '.join(sorted(domains))})")
    if instruction:
        last = messages[-1]
        messages = [*messages[:-1], {**last, "content": last["content"].rstrip() + " " + instruction.strip()}]
    lang = row.get("lang")
    if lang is not None and lang not in ("en", "zh"):
        raise DataError(f"{where}: 'lang' must be en or zh, got {lang!r}")
    return Prompt(messages, domain, reference, where, constraints=constraints, lang=lang,
                  heldout_types=bool(row.get("heldout_types", False)))


def load_prompts(sources: list[PromptSource], domains: set[str], seed: int) -> list[Prompt]:
    """Every source's prompts, mixed by weight (a weight below 1 takes a random share, seeded)."""
    if not sources:
        raise DataError("no prompts: the recipe's 'prompts' list is empty")
    prompts = []
    for i, src in enumerate(sources):
        rows = list(read_rows(src.path))
        if src.rows is not None:
            picked = rows[row_slice(src.rows)]
            if not picked:
                raise DataError(f"{src.path}: rows {src.rows!r} selects nothing (the file has {len(rows)} rows)")
            rows = picked
        for where, row in rows:
            p = row_to_prompt(row, src.format, where, domains, src.domain, src.instruction)
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
