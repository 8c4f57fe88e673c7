"""Export labels as preference data in the shapes `common.data.preferences` reads (and the reward
model trains on):

- `pairs.jsonl` (+ a `datasets` folder `pairs/`): conversational `{prompt: [messages],
  chosen: [assistant message], rejected: [assistant message]}` with `domain`, `n_annotators`,
  `agreement` (share of the task's annotators who ordered this pair this way, ties counting
  against) and `rank_gap` columns. Every K-way ranking expands into all its ordered pairs;
  tied pairs are dropped. `combine`: `all` = one row per vote; `majority` = one row per pair
  that more than half of the task's annotators ordered that way (rank_gap = their mean gap).
- `rankings.jsonl`: the raw per-annotator rankings `{prompt, responses, ranks, domain, scores?,
  annotator, task_id, batch, model_ids}` (the listwise loss uses them; the evaluation stage reads
  its blind comparisons back from them).

Only the latest version of each annotator's label counts; flagged labels and gold tasks are left
out. `batch` picks one import batch; without it every batch is exported except evaluation batches
(`eval:…`): an evaluation's held-out prompts must not become training data. Files are written to
temporary names and renamed, so an export is never half-written.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from itertools import permutations
from pathlib import Path

from annotation_ui.store import Store

EVAL_BATCH_PREFIX = "eval:"


def in_export(task, batch: str | None) -> bool:
    if batch is not None:
        return task.batch == batch
    return not (task.batch or "").startswith(EVAL_BATCH_PREFIX)


def collect(store: Store, batch: str | None = None, leave_out: set[str] = frozenset()) -> dict[int, tuple[object, list]]:
    """task id → (task, [(user name, label), ...]) for unflagged latest labels of non-gold tasks,
    without the annotators in `leave_out`."""
    names = {u.id: u.name for u in store.users()}
    tasks = {t.id: t for t in store.tasks() if t.gold_ranks is None and in_export(t, batch)}
    out: dict[int, tuple[object, list]] = {}
    for label in store.labels():
        if label.flag is None and label.ranks is not None and label.task_id in tasks and names[label.user_id] not in leave_out:
            out.setdefault(label.task_id, (tasks[label.task_id], []))[1].append((names[label.user_id], label))
    return out


def build_rows(store: Store, combine: str = "all", batch: str | None = None,
               leave_out: set[str] = frozenset()) -> tuple[list[dict], list[dict]]:
    if combine not in ("all", "majority"):
        raise ValueError(f"combine must be 'all' or 'majority', got {combine!r}")
    pairs, rankings = [], []
    for task, votes in collect(store, batch, leave_out).values():
        n = len(votes)
        k = len(task.responses)
        # prefer[(i, j)] = annotators ranking i strictly above j, with their rank gaps
        prefer: dict[tuple[int, int], list[int]] = defaultdict(list)
        for name, label in votes:
            rankings.append({"prompt": task.prompt, "responses": task.responses, "ranks": label.ranks,
                             "domain": task.domain, "annotator": name, "task_id": task.id, "batch": task.batch,
                             "model_ids": task.model_ids, **({"scores": label.scores} if label.scores else {})})
            for i, j in permutations(range(k), 2):
                if label.ranks[i] < label.ranks[j]:
                    prefer[(i, j)].append(label.ranks[j] - label.ranks[i])

        for (i, j), gaps in sorted(prefer.items()):
            agreement = len(gaps) / n
            if combine == "all":
                pairs.extend(_pair_row(task, i, j, g, n, agreement) for g in gaps)
            elif len(gaps) > n / 2:
                pairs.append(_pair_row(task, i, j, sum(gaps) / len(gaps), n, agreement))
    return pairs, rankings


def _pair_row(task, i: int, j: int, gap: float, n: int, agreement: float) -> dict:
    """Response i preferred to j, in the conversational pair format."""
    return {"prompt": task.prompt,
            "chosen": [{"role": "assistant", "content": task.responses[i]}],
            "rejected": [{"role": "assistant", "content": task.responses[j]}],
            "domain": task.domain, "n_annotators": n, "agreement": agreement, "rank_gap": gap}


def _write_jsonl(rows: list[dict], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def export(store: Store, out_dir: str | Path, combine: str = "all", user_id: int | None = None,
           batch: str | None = None, floor: float | None = None) -> dict:
    """Write pairs.jsonl, pairs/ (datasets) and rankings.jsonl into `out_dir`; returns counts.

    With `floor`, annotators whose gold accuracy or agreement with the majority is under it
    (annotation_ui.quality.below_floor) are left out; the counts say who and how many labels."""
    from datasets import Dataset

    from annotation_ui.quality import below_floor, store_report

    leave_out: dict[str, list[str]] = below_floor(store_report(store), floor)["annotators"] if floor is not None else {}
    pairs, rankings = build_rows(store, combine, batch, set(leave_out))
    _, kept_all = build_rows(store, "all", batch) if leave_out else (None, rankings)
    left_out_labels = len(kept_all) - len(rankings)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_jsonl(pairs, out / "pairs.jsonl")
    _write_jsonl(rankings, out / "rankings.jsonl")
    if pairs:
        tmp = out / "pairs.tmp"
        Dataset.from_list(pairs).save_to_disk(str(tmp))
        final = out / "pairs"
        if final.exists():
            import shutil

            shutil.rmtree(final)
        tmp.rename(final)
    with store.session() as s:
        store.audit(s, "export", user_id, combine=combine, batch=batch, pairs=len(pairs), rankings=len(rankings),
                    to=str(out), floor=floor, left_out=sorted(leave_out), left_out_labels=left_out_labels)
    return {"pairs": len(pairs), "rankings": len(rankings), "left_out": leave_out, "left_out_labels": left_out_labels}
