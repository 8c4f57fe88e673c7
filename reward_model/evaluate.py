"""python -m reward_model.evaluate --model runs/reward_model/default/model --data FILE [--format auto] [--head quality]

Scores every response of every preference group in FILE with the saved reward model (`--head`:
which head of a heads: odin model; its default is quality) and prints the same held-out figures
as training: accuracy, mean margin, ECE, per-domain accuracy, ρ(reward, response length).
Dialogue pairs that diverge before their last reply are skipped and counted, as training does.
Responses of all groups are scored together, in batches of similar length.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from tqdm.auto import tqdm

from common.data import DataError
from common.data.preferences import PREFERENCE_FORMATS, read_preferences
from common.rewards.scorer import load_reward_scorer
from common.stage import run_stage
from reward_model.data import response_tokens
from reward_model.metrics import format_metrics, preference_metrics


def evaluate(model: str, data: str, fmt: str = "auto", batch_size: int = 16, head: str | None = None) -> dict[str, float]:
    unpaired: list[str] = []
    groups = read_preferences(data, fmt, unpaired=unpaired)
    if not groups:
        skipped = f" ({len(unpaired)} unpaired skipped)" if unpaired else ""
        raise DataError(f"{data}: no preference groups to evaluate{skipped}")
    scorer = load_reward_scorer(model, head=head)
    width = max(len(g.responses) for g in groups)
    rewards = np.zeros((len(groups), width))
    ranks = np.zeros((len(groups), width), dtype=int)
    lengths = np.zeros((len(groups), width))
    # every (group, slot) in one list, scored across groups in batches of similar length
    items = sorted(((i, j) for i, g in enumerate(groups) for j in range(len(g.responses))),
                   key=lambda ij: len(groups[ij[0]].responses[ij[1]]) + sum(len(m["content"]) for m in groups[ij[0]].prompt))
    for start in tqdm(range(0, len(items), batch_size), desc="scoring", mininterval=1.0):
        part = items[start : start + batch_size]
        scores = scorer([groups[i].prompt for i, _ in part], [groups[i].responses[j] for i, j in part],
                        batch_size=batch_size).numpy()
        for (i, j), score in zip(part, scores):
            rewards[i, j] = score
    for i, g in enumerate(groups):
        ranks[i, : len(g.ranks)] = g.ranks
        lengths[i, : len(g.responses)] = [response_tokens(scorer.tokenizer, r) for r in g.responses]
    figures = preference_metrics(rewards, ranks, [g.domain for g in groups], lengths)
    figures["skipped_unpaired"] = len(unpaired)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m reward_model.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="reward model folder (runs/reward_model/<name>/model)")
    parser.add_argument("--data", required=True, help="preference file (JSONL, .gz) or datasets folder")
    parser.add_argument("--format", default="auto", choices=PREFERENCE_FORMATS)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--head", choices=("quality", "length", "sum"), default=None,
                        help="heads: odin models only: the head to score with (default: the model's, quality)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    figures = evaluate(args.model, args.data, args.format, args.batch_size, args.head)
    print(json.dumps(figures) if args.json else f"{args.data}:\n{format_metrics(figures)}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
