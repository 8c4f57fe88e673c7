"""Task files → task rows for the store, validated whole before anything is written.

- JSONL: `{"prompt": str | [messages], "responses": [str, ...] (K ≥ 2), "domain"?: str,
  "model_ids"?: [str, ...], "gold_ranks"?: [int, ...], "priority"?: number (higher first)}`;
- HH (`../shared/data/hh-rlhf`): `{"chosen": dialogue, "rejected": dialogue}` → the shared
  turns as prompt, the two last replies as responses, shown behind a content notice.

Every problem raises `DataError` naming file and line; an import is all or nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

from common.data import DataError, check_messages
from common.data.preferences import convert_rows, read_rows, row_to_group

MAX_CHARS = 20_000  # per prompt message or response: longer text is refused, not truncated
MAX_RESPONSES = 8  # K per task; the page shows responses A–H


def _text(value, where: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: {what} must be a non-empty string")
    if len(value) > MAX_CHARS:
        raise DataError(f"{where}: {what} is {len(value)} characters (limit {MAX_CHARS})")
    return value


def row_to_task(row: dict, where: str, fmt: str = "auto") -> dict:
    if fmt == "auto":
        fmt = "jsonl" if "responses" in row else "hh" if "chosen" in row and "rejected" in row else ""
        if not fmt:
            keys = ", ".join(sorted(row)) or "none"
            raise DataError(f"{where}: unrecognised row (keys: {keys}); expected 'prompt' + 'responses', "
                            "or HH 'chosen' + 'rejected'")
    if fmt == "hh":
        group = row_to_group({"chosen": row["chosen"], "rejected": row["rejected"]}, "hh", where)
        return {"prompt": group.prompt, "responses": [_text(r, where, "a reply") for r in group.responses],
                "domain": row.get("domain") or "general", "source": where, "content_notice": True}
    if "prompt" not in row:
        raise DataError(f"{where}: missing field 'prompt'")
    prompt = row["prompt"]
    messages = [{"role": "user", "content": _text(prompt, where, "'prompt'")}] if isinstance(prompt, str) \
        else check_messages(prompt, where, "prompt")
    for m in messages:
        _text(m["content"], where, "a prompt message")
    responses = row["responses"]
    if not isinstance(responses, list) or len(responses) < 2:
        raise DataError(f"{where}: 'responses' must be a list of at least 2 (K ≥ 2)")
    if len(responses) > MAX_RESPONSES:
        raise DataError(f"{where}: {len(responses)} responses; at most {MAX_RESPONSES} per task")
    responses = [_text(r, where, f"response {i + 1}") for i, r in enumerate(responses)]
    k = len(responses)
    model_ids = row.get("model_ids")
    if model_ids is not None and (not isinstance(model_ids, list) or len(model_ids) != k):
        raise DataError(f"{where}: 'model_ids' must list one id per response ({k})")
    gold = row.get("gold_ranks")
    if gold is not None:
        from annotation_ui.store import StoreError, check_ranks

        try:
            check_ranks(gold, k)
        except StoreError as err:
            raise DataError(f"{where}: gold_ranks: {err}") from None
    domain = row.get("domain") or "general"
    if not isinstance(domain, str):
        raise DataError(f"{where}: 'domain' must be a string")
    priority = row.get("priority", 0.0)
    if isinstance(priority, bool) or not isinstance(priority, (int, float)) or not math.isfinite(priority):
        raise DataError(f"{where}: 'priority' must be a finite number (higher is handed out first), got {priority!r}")
    return {"prompt": messages, "responses": responses, "model_ids": model_ids, "domain": domain, "source": where,
            "gold_ranks": gold, "content_notice": bool(row.get("content_notice", False)), "priority": float(priority)}


def read_tasks(path: str, fmt: str = "auto", limit: int | None = None) -> tuple[list[dict], int]:
    """(task rows, HH rows skipped because their dialogues share no prompt)."""
    tasks, skipped = convert_rows(path, lambda row, where: [row_to_task(row, where, fmt)], limit)
    if not tasks:
        raise DataError(f"{path}: no tasks")
    return tasks, len(skipped)


def generate_tasks(model_spec: str, prompts_path: str, k: int, max_new_tokens: int = 128, seed: int = 0,
                   limit: int | None = None, budget: int | None = None, reward_models: list[str] | None = None,
                   strategy: str | None = None) -> list[dict]:
    """K sampled candidates per prompt from a model folder (the SFT output or the default model).

    Prompt rows: `{"prompt": str | [messages], "domain"?: str}`. Empty samples are drawn again
    (up to 3 times); a prompt that still lacks K non-empty candidates is an error naming its line.
    With `strategy` (annotation_ui/acquisition.py: random, margin, ensemble) only the `budget` tasks the
    reward model(s) are least sure how to rank are kept, each with that uncertainty as its
    priority. Every check that can fail runs before the model samples anything.
    """
    import torch
    from tqdm.auto import tqdm

    from common.models import load_model_and_tokenizer
    from common.models.generate import sample_replies

    if not 2 <= k <= MAX_RESPONSES:
        raise DataError(f"k must be from 2 to {MAX_RESPONSES}, got {k}")
    rows = []
    for where, row in read_rows(prompts_path):
        if "prompt" not in row:
            raise DataError(f"{where}: missing field 'prompt'")
        prompt = row["prompt"]
        messages = [{"role": "user", "content": _text(prompt, where, "'prompt'")}] if isinstance(prompt, str) \
            else check_messages(prompt, where, "prompt")
        rows.append((where, messages, row.get("domain") or "general"))
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise DataError(f"{prompts_path}: no prompts")
    if strategy is not None:
        check_selection(strategy, budget, reward_models or [], len(rows), prompts_path)
    elif budget is not None or reward_models:
        raise DataError("--budget and --reward_model choose tasks: name how with --select random|margin|ensemble")
    torch.manual_seed(seed)
    model, tokenizer = load_model_and_tokenizer(model_spec)
    tasks = []
    for where, messages, domain in tqdm(rows, desc=f"generating {k} candidates per prompt"):
        replies = [r for r in sample_replies(model, tokenizer, messages, k, max_new_tokens) if r]
        for _ in range(3):
            if len(replies) >= k:
                break
            replies += [r for r in sample_replies(model, tokenizer, messages, k, max_new_tokens) if r]
        if len(replies) < k:
            raise DataError(f"{where}: the model gave fewer than {k} non-empty replies")
        tasks.append({"prompt": messages, "responses": replies[:k], "model_ids": [model_spec] * k, "domain": domain,
                      "source": where})
    if strategy is not None:
        tasks = select_tasks(tasks, strategy, budget, reward_models or [], seed)
    return tasks


def check_selection(strategy: str, budget: int | None, reward_models: list[str], prompts: int, where: str) -> None:
    from annotation_ui.acquisition import STRATEGIES
    from common.models import resolve_model
    from common.rewards.ensemble import member_folders
    from common.rewards.scorer import REWARD_CONFIG

    reward_models = member_folders(reward_models)  # an ensemble folder (make rm ENSEMBLE=n) stands for its members
    if strategy not in STRATEGIES:
        raise DataError(f"--select must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if budget is None or budget < 1:
        raise DataError(f"--select {strategy} needs --budget N ≥ 1 (tasks to keep)")
    if budget > prompts:
        raise DataError(f"--budget {budget} is larger than the candidate pool: {where} has {prompts} prompts")
    if strategy != "random" and not reward_models:
        raise DataError(f"--select {strategy} needs --reward_model (the model whose uncertainty picks the tasks)")
    if strategy == "ensemble" and len(reward_models) < 2:
        raise DataError("--select ensemble needs ≥ 2 reward models (--reward_model A B …): their disagreement is the "
                        "signal; with one, use --select margin")
    for spec in reward_models:
        try:
            folder = resolve_model(spec)
        except Exception as err:  # noqa: BLE001 — one line naming the spec
            raise DataError(f"--reward_model {spec}: {str(err).splitlines()[0]}") from None
        if not (Path(folder) / REWARD_CONFIG).is_file():
            raise DataError(f"--reward_model {spec}: not a reward model (no {REWARD_CONFIG}); `make rm` trains one")


def select_tasks(tasks: list[dict], strategy: str, budget: int, reward_models: list[str], seed: int = 0) -> list[dict]:
    """The `budget` tasks to label first, each with its uncertainty as `priority` (highest first).
    `reward_models`: folders, ensemble folders standing for their members."""
    import numpy as np

    from annotation_ui.acquisition import Candidate, select
    from common.rewards.ensemble import member_folders
    from common.rewards.scorer import load_reward_scorer

    reward_models = member_folders(reward_models)
    k = len(tasks[0]["responses"])
    scores = np.zeros((max(1, len(reward_models)), len(tasks), k))  # (M, tasks, K)
    if strategy != "random":
        prompts = [t["prompt"] for t in tasks for _ in t["responses"]]
        replies = [r for t in tasks for r in t["responses"]]
        for m, spec in enumerate(reward_models):
            scorer = load_reward_scorer(spec)
            scores[m] = scorer(prompts, replies).numpy().reshape(len(tasks), k)
            del scorer
    candidates = [Candidate(str(i), t["domain"], scores[:, i, :]) for i, t in enumerate(tasks)]
    try:
        chosen = select(candidates, strategy, budget, seed=seed)
    except ValueError as err:
        raise DataError(str(err)) from None
    return [{**tasks[int(c.key)], "priority": float(c.uncertainty)} for c in chosen]
