"""Logged responses for offline BCQ: (prompt, response, reward[, domain]) from any of

- logged JSONL: `{"prompt": str | [messages], "response": str, "reward": float, "domain"?: str}`;
- PPO run logs: `runs/ppo/<run>/samples.jsonl` rows `{prompt, response, score, domain, step}`
  (the logged mixed score is the reward);
- preference data in the shapes of `common.data.preferences` — annotation exports (raw rankings or
  pairs) and HH pairs (`../shared/data/hh-rlhf`): every ranked response becomes one record.
  The mapping from ranks to rewards (`rank_reward`): the best rank gets +1, the worst −1, ranks
  between are spaced evenly, tied responses share a value; a group whose responses carry
  absolute scores (1–5) uses (score − 3) / 2 instead. An HH pair is thus chosen +1, rejected −1.

Rewards can then be recomputed (reward model or per-domain mixer) by the stage. Bad rows raise
`DataError` naming file and line.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

from common.data import DataError, Message, parse_prompt
from common.data.hygiene import mix_by_weight, split_indices
from common.data.preferences import convert_rows, detect_preference_format, row_to_group

LOGGED_FORMATS = ("auto", "logged", "ppo_samples", "preferences")
log = logging.getLogger(__name__)


@dataclass
class LoggedResponse:
    prompt: list[Message]  # ends with a user turn
    response: str
    reward: float
    domain: str = "general"
    where: str = ""
    source: int = 0  # index of the data source it came from (for the mix weights)


def rank_reward(rank: int, ranks: list[int]) -> float:
    """Rank (1 = best) within `ranks` → a reward in [−1, 1]: best +1, worst −1, evenly spaced."""
    best, worst = min(ranks), max(ranks)
    if best == worst:
        return 0.0
    return 1.0 - 2.0 * (rank - best) / (worst - best)


def score_reward(score: float) -> float:
    """An absolute 1–5 score → (score − 3) / 2 ∈ [−1, 1]."""
    return (score - 3.0) / 2.0


def _reward(row: dict, key: str, where: str) -> float:
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{where}: '{key}' must be a finite number, got {value!r}")
    return float(value)


def detect_format(row: dict) -> str | None:
    if "response" in row and "reward" in row:
        return "logged"
    if "response" in row and "score" in row:
        return "ppo_samples"
    if detect_preference_format(row):
        return "preferences"
    return None


def row_to_records(row: dict, fmt: str, where: str) -> list[LoggedResponse]:
    if fmt == "auto":
        fmt = detect_format(row) or ""
        if not fmt:
            keys = ", ".join(sorted(row)) or "none"
            raise DataError(f"{where}: unrecognised row (keys: {keys}); expected 'prompt'+'response'+'reward', "
                            "a PPO sample ('response'+'score'), or a preference row (pairs, rankings, HH)")
    if fmt in ("logged", "ppo_samples"):
        key = "reward" if fmt == "logged" else "score"
        for field in ("prompt", "response", key):
            if field not in row:
                raise DataError(f"{where}: missing field '{field}'")
        if not isinstance(row["response"], str) or not row["response"].strip():
            raise DataError(f"{where}: 'response' must be a non-empty string")
        domain = row.get("domain") or "general"
        if not isinstance(domain, str):
            raise DataError(f"{where}: 'domain' must be a string")
        return [LoggedResponse(parse_prompt(row["prompt"], where), row["response"], _reward(row, key, where), domain, where)]
    group = row_to_group(row, "auto", where)
    rewards = (
        [score_reward(s) for s in group.scores] if group.scores is not None
        else [rank_reward(r, group.ranks) for r in group.ranks]
    )
    return [LoggedResponse(group.prompt, resp, rew, group.domain, where) for resp, rew in zip(group.responses, rewards)]


def read_logged(path: str, fmt: str = "auto") -> tuple[list[LoggedResponse], int]:
    """All records of one file (JSONL, .jsonl.gz or a `datasets` folder) and the number of HH
    rows skipped because their two dialogues do not share a prompt."""
    if fmt not in LOGGED_FORMATS:
        raise DataError(f"{path}: unknown format '{fmt}' (one of {', '.join(LOGGED_FORMATS)})")
    out, skipped = convert_rows(path, lambda row, where: row_to_records(row, fmt, where))
    if not out:
        raise DataError(f"{path}: no records")
    return out, len(skipped)


def load_logged(sources, seed: int) -> tuple[list[LoggedResponse], int]:
    """Every source's records, mixed by weight (`common.data.hygiene.mix_by_weight`)."""
    if not sources:
        raise DataError("data: no logged-response files given")
    records, skipped = [], 0
    for i, src in enumerate(sources):
        rows, n_skipped = read_logged(src.path, src.format)
        for r in rows:
            r.source = i
        records += rows
        skipped += n_skipped
    return mix_by_weight(records, [s.weight for s in sources], random.Random(seed)), skipped


def split_by_prompt(records: list[LoggedResponse], eval_fraction: float, seed: int):
    """(train, held_out): whole prompts go to one side, so evaluation prompts are unseen."""
    keys = sorted({repr(r.prompt) for r in records})
    train_idx, eval_idx = split_indices(len(keys), eval_fraction, seed)
    held = {keys[i] for i in eval_idx}
    return [r for r in records if repr(r.prompt) not in held], [r for r in records if repr(r.prompt) in held]


def drop_long_records(records: list[LoggedResponse], tokenizer, max_tokens: int) -> list[LoggedResponse]:
    """Records whose prompt (chat template applied) is longer than `max_tokens` are skipped, with a warning."""
    lengths: dict[str, int] = {}
    kept, skipped = [], []
    for r in records:
        key = repr(r.prompt)
        if key not in lengths:
            lengths[key] = len(tokenizer.apply_chat_template(r.prompt, add_generation_prompt=True, tokenize=True,
                                                             return_dict=False))
        (kept if lengths[key] <= max_tokens else skipped).append(r)
    if skipped:
        log.warning("skipped %d record(s) with prompts longer than max_prompt_tokens=%d: %s",
                    len(skipped), max_tokens, ", ".join(r.where for r in skipped[:5]))
    return kept
