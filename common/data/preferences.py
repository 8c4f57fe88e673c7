"""Preference records: what annotators (or logged comparisons) say about responses to a prompt.

Every source becomes a `PreferenceGroup`: one prompt (a chat ending with a user turn), K ≥ 2
responses and their ranks (1 = best; equal ranks are ties). A pair is a group with K = 2.

Row shapes read from JSONL files (optionally .gz) or `datasets` folders (`save_to_disk`):
- pairs:    {"prompt": str | [messages], "chosen": str | [messages], "rejected": ...,
             optional "domain", "margin", "rank_gap", "score_chosen", "score_rejected"}
            (conversational chosen/rejected without a prompt: the shared turns are the prompt)
- rankings: {"prompt": ..., "responses": [str, ...], "ranks": [int, ...],
             optional "domain", "scores": [float, ...], "annotator"}
- hh:       {"chosen": "\\n\\nHuman: …\\n\\nAssistant: …", "rejected": "…"}  (HH-RLHF)
The annotation app's export writes the first two shapes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from common.config import param
from common.data import DataError, Message, check_messages, parse_hh_dialogue, read_jsonl, require, unrecognised
from common.data.hygiene import HygieneReport, mix_by_weight, split_indices

PREFERENCE_FORMATS = ("auto", "pairs", "rankings", "hh")
log = logging.getLogger(__name__)


@dataclass
class PreferenceSource:
    """One preference file (or `datasets` folder) and its share of the training mix."""

    path: str = param(help="JSONL file (.jsonl / .jsonl.gz) or a `datasets` folder")
    format: Literal["auto", "pairs", "rankings", "hh"] = param(
        "auto", help="row shape; auto detects pairs / rankings / HH per row (common/data/preferences.py)"
    )
    weight: float = param(1.0, help="share of this source's training groups: 0.5 = a random half, 2.0 = twice")

    def __post_init__(self):
        if self.weight <= 0:
            raise ValueError(f"data source {self.path}: weight must be > 0, got {self.weight}")


class UnpairedDialoguesError(DataError):
    """Chosen and rejected dialogues that do not share every turn but the last reply."""


@dataclass
class PreferenceGroup:
    prompt: list[Message]  # the conversation the responses answer; ends with a user turn
    responses: list[str]  # K ≥ 2 assistant replies
    ranks: list[int]  # same length; 1 = best, equal values are ties
    domain: str = "general"
    scores: list[float] | None = None  # optional absolute scores (e.g. 1–5), higher = better
    margin: float | None = None  # optional explicit margin for a pair (chosen over rejected)
    where: str = ""  # "file:line", for messages
    source: int = 0  # index of the data source it came from
    meta: dict[str, Any] = field(default_factory=dict)


def read_rows(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """`(where, row)` from a JSONL file (where = file:line) or a `datasets` folder (file:row N)."""
    path = Path(path)
    if path.is_dir():
        from datasets import load_from_disk

        try:
            ds = load_from_disk(str(path))
        except Exception as err:  # noqa: BLE001 - any load failure is a bad data folder
            raise DataError(f"{path}: not a `datasets` folder ({err})") from None
        if hasattr(ds, "keys"):  # a DatasetDict: read its train split
            if "train" not in ds:
                raise DataError(f"{path}: dataset folder has splits {list(ds)} but no 'train'")
            ds = ds["train"]
        for i, row in enumerate(ds):
            yield f"{path}:row {i}", row
        return
    for line_no, row in read_jsonl(path):
        yield f"{path}:{line_no}", row


def _as_prompt(value: Any, where: str) -> list[Message]:
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: 'prompt' is empty")
        return [{"role": "user", "content": value}]
    return check_messages(value, where, "prompt")


def _as_reply(value: Any, where: str, key: str) -> str:
    if isinstance(value, str):
        return value
    messages = check_messages(value, where, key)
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: '{key}' must end with an assistant message")
    return messages[-1]["content"]


def _split_dialogues(chosen: list[Message], rejected: list[Message], where: str) -> tuple[list[Message], str, str]:
    """Two whole dialogues that share all turns but the last reply → (prompt, reply, reply)."""
    if len(chosen) < 2 or len(rejected) < 2 or chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise DataError(f"{where}: chosen and rejected must each end with an assistant reply after a prompt")
    if chosen[:-1] != rejected[:-1]:
        raise UnpairedDialoguesError(f"{where}: chosen and rejected differ before their last reply (no shared prompt)")
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


def detect_preference_format(row: dict[str, Any]) -> str | None:
    if "responses" in row and "ranks" in row:
        return "rankings"
    if "chosen" in row and "rejected" in row:
        is_hh = "prompt" not in row and isinstance(row["chosen"], str) and row["chosen"].startswith("\n\nHuman:")
        return "hh" if is_hh else "pairs"
    return None


def _optional_float(row: dict, key: str, where: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where}: '{key}' must be a number, got {value!r}")
    return float(value)


def row_to_group(row: dict[str, Any], fmt: str, where: str) -> PreferenceGroup:
    """One row → a group, or DataError naming the row and the problem."""
    if fmt == "auto":
        fmt = detect_preference_format(row) or ""
        if not fmt:
            raise unrecognised(
                row, where, "'prompt'+'chosen'+'rejected', 'prompt'+'responses'+'ranks', or HH 'chosen'+'rejected'"
            )
    domain = row.get("domain") or "general"
    if not isinstance(domain, str):
        raise DataError(f"{where}: 'domain' must be a string")
    if fmt == "hh":
        require(row, ("chosen", "rejected"), where)
        prompt, chosen, rejected = _split_dialogues(
            parse_hh_dialogue(row["chosen"], where), parse_hh_dialogue(row["rejected"], where), where
        )
        return PreferenceGroup(prompt, [chosen, rejected], [1, 2], domain, where=where)
    if fmt == "pairs":
        require(row, ("chosen", "rejected"), where)
        if "prompt" in row and row["prompt"] is not None:
            prompt = _as_prompt(row["prompt"], where)
            chosen, rejected = _as_reply(row["chosen"], where, "chosen"), _as_reply(row["rejected"], where, "rejected")
        elif isinstance(row["chosen"], list):
            prompt, chosen, rejected = _split_dialogues(
                check_messages(row["chosen"], where, "chosen"), check_messages(row["rejected"], where, "rejected"), where
            )
        else:
            raise DataError(f"{where}: missing field 'prompt'")
        s_c, s_r = _optional_float(row, "score_chosen", where), _optional_float(row, "score_rejected", where)
        gap = _optional_float(row, "rank_gap", where)
        return PreferenceGroup(
            prompt, [chosen, rejected], [1, 1 + int(gap) if gap else 2], domain,
            scores=[s_c, s_r] if s_c is not None and s_r is not None else None,
            margin=_optional_float(row, "margin", where), where=where,
        )
    if fmt == "rankings":
        require(row, ("prompt", "responses", "ranks"), where)
        prompt = _as_prompt(row["prompt"], where)
        responses, ranks = row["responses"], row["ranks"]
        if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
            raise DataError(f"{where}: 'responses' must be a list of strings")
        if len(responses) < 2:
            raise DataError(f"{where}: a ranking needs at least 2 responses, got {len(responses)}")
        if not isinstance(ranks, list) or len(ranks) != len(responses):
            raise DataError(f"{where}: 'ranks' must be a list with one rank per response ({len(responses)})")
        if not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in ranks):
            raise DataError(f"{where}: 'ranks' must be integers ≥ 1 (1 = best), got {ranks}")
        scores = row.get("scores")
        if scores is not None and (not isinstance(scores, list) or len(scores) != len(responses)):
            raise DataError(f"{where}: 'scores' must be a list with one score per response")
        meta = {"annotator": row["annotator"]} if "annotator" in row else {}
        return PreferenceGroup(prompt, list(responses), list(ranks), domain, scores=scores, where=where, meta=meta)
    raise DataError(f"{where}: unknown format {fmt!r} (expected one of {', '.join(PREFERENCE_FORMATS)})")


def convert_rows(path: str | Path, convert, limit: int | None = None,
                 skip_unpaired: bool = True) -> tuple[list, list[str]]:
    """The items `convert(row, where)` returns (a list per row) for every row of `path`, at most
    `limit`, and the locations of HH rows whose two dialogues share no prompt — skipped, or
    raised when `skip_unpaired` is False. Any other bad row raises DataError."""
    items: list = []
    skipped: list[str] = []
    for where, row in read_rows(path):
        try:
            items.extend(convert(row, where))
        except UnpairedDialoguesError:
            if not skip_unpaired:
                raise
            skipped.append(where)
            continue
        if limit is not None and len(items) >= limit:
            return items[:limit], skipped
    return items, skipped


def read_preferences(
    path: str | Path, fmt: str = "auto", source: int = 0, unpaired: list[str] | None = None
) -> list[PreferenceGroup]:
    """Every group in a file or dataset folder; the first bad row raises DataError.

    Dialogue pairs whose turns diverge before the last reply (real HH data has such rows,
    from a stray "Human:" inside a reply) raise too, unless `unpaired` is a list: then they
    are skipped and their locations appended to it, for the hygiene report.
    """
    groups, skipped = convert_rows(path, lambda row, where: [row_to_group(row, fmt, where)],
                                   skip_unpaired=unpaired is not None)
    for group in groups:
        group.source = source
    if unpaired is not None:
        unpaired.extend(skipped)
    return groups


# ---------------------------------------------------------------------------------------------
# Training sets: what the reward model and DPO both read
# ---------------------------------------------------------------------------------------------


def read_sources(sources: list[PreferenceSource], report: HygieneReport) -> list[PreferenceGroup]:
    if not sources:
        raise DataError("no data: the recipe's 'data' list is empty")
    groups: list[PreferenceGroup] = []
    unpaired: list[str] = []
    for i, src in enumerate(sources):
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


def split_by_prompt(groups: list[PreferenceGroup], val_fraction: float, seed: int, method: str = "shuffle"):
    """Held-out prompts are never trained on: every group of a prompt goes to the same side.

    `shuffle`: a seeded draw of val_fraction of the distinct prompts (the exact share). `hash`: a
    prompt is held out when the hash of (seed, prompt) falls under val_fraction — about the share,
    and stable as data grows: a prompt keeps its side in every later round of labels (the closed
    loop's reward models are validated on the same prompts round after round)."""
    keys = [_key(g.prompt) for g in groups]
    prompts = sorted(set(keys))
    if method == "hash":
        def unit(key: str) -> float:
            return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64

        held_out = {p for p in prompts if unit(p) < val_fraction}
    elif method == "shuffle":
        _, val_idx = split_indices(len(prompts), val_fraction, seed)
        held_out = {prompts[i] for i in val_idx}
    else:
        raise ValueError(f"val_split must be 'shuffle' or 'hash', got {method!r}")
    train = [g for g, k in zip(groups, keys) if k not in held_out]
    val = [g for g, k in zip(groups, keys) if k in held_out]
    return train, val


def prepare_groups(sources: list[PreferenceSource], val_fraction: float, seed: int,
                   max_train_groups: int | None = None,
                   val_split: str = "shuffle") -> tuple[list[PreferenceGroup], list[PreferenceGroup], HygieneReport]:
    """Read, clean, split by prompt and mix by weight → (train, validation, report); raises DataError
    (file:line) before anything is written. The reward model and DPO train on the same sets."""
    report = HygieneReport()
    groups = clean(read_sources(sources, report), report)
    train, val = split_by_prompt(groups, val_fraction, seed, val_split)
    report.add("validation split (by prompt)", len(groups), len(train))
    mixed = mix_by_weight(train, [src.weight for src in sources], random.Random(seed))
    report.add("weighted mix", len(train), len(mixed))
    if max_train_groups is not None and len(mixed) > max_train_groups:
        report.add("max_train_groups", len(mixed), max_train_groups)
        mixed = mixed[:max_train_groups]
    if not mixed:
        raise DataError("no training preferences left after cleaning; see the report above")
    return mixed, val, report
