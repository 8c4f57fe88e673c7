"""Benchmark: scoring 1,000 replies (~60 tokens each, two thirds English and a third Chinese) against
rows of 1–3 constraints from data/constraints, IFEval-strict and loose — to show that rule rewards
cost nothing next to sampling the replies.

The replies are seeded random text shaped like a small model's: sentences, sometimes a bullet
list, a quoted or JSON reply, a postscript. The constraint rows are the shipped train and
held-out rows, in turn.

    .venv/bin/python bench/verifier_speed.py [--replies 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from common.rewards.verifiers import score

REPO = Path(__file__).resolve().parents[1]
EN = ("the water tea rest doctor money law code answer is a to of and you should drink sleep save "
      "read write first important example because time simple good day people step total").split()
ZH = "多喝水休息医生建议注意首先重要例如因为时间生活习惯法律合同权利代码函数程序答案一共计算钱风险储蓄"
# documented sampling rates of the default model (docs/bench/ppo-vs-trl-2026-11-26.md), tokens per second
SAMPLING = {"2-core CPU, fp32": 27.2, "H200, compiled decoding": 390.0}


def english(rng: random.Random) -> str:
    words = [rng.choice(EN) for _ in range(45)]  # ≈ 60 tokens
    sentences = [" ".join(words[i : i + 9]).capitalize() + rng.choice(".?!") for i in range(0, 45, 9)]
    return _shape(rng, sentences, " ")


def chinese(rng: random.Random) -> str:
    chars = [rng.choice(ZH) for _ in range(50)]  # ≈ 60 tokens
    sentences = ["".join(chars[i : i + 10]) + rng.choice("。，！？") for i in range(0, 50, 10)]
    return _shape(rng, sentences, "")


def _shape(rng: random.Random, sentences: list[str], sep: str) -> str:
    form = rng.random()
    if form < 0.2:
        return "\n".join("* " + s for s in sentences[:3])
    if form < 0.3:
        return '"' + sep.join(sentences) + '"'
    if form < 0.4:
        return json.dumps({"answer": sep.join(sentences)}, ensure_ascii=False)
    if form < 0.5:
        return sep.join(sentences[:-1]) + "\nP.S. " + sentences[-1]
    return sep.join(sentences)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replies", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes; the best is reported")
    args = parser.parse_args()

    rows = []
    for name in ("train.jsonl", "heldout.jsonl"):
        rows += [json.loads(line) for line in (REPO / "data/constraints" / name).read_text(encoding="utf-8").splitlines()]
    rng = random.Random(0)
    picked = [rows[i % len(rows)] for i in range(args.replies)]
    batch = [(chinese(rng) if row["lang"] == "zh" else english(rng), row["constraints"]) for row in picked]
    print(f"{len(batch)} replies ({sum(row['lang'] == 'zh' for row in picked)} Chinese), "
          f"{sum(len(cs) for _, cs in batch)} constraints")

    tokens = 60 * len(batch)
    for loose in (False, True):
        best, met = float("inf"), 0.0
        for _ in range(args.repeats):
            start = time.perf_counter()
            met = sum(score(reply, cs, loose=loose) for reply, cs in batch)
            best = min(best, time.perf_counter() - start)
        print(f"{'loose' if loose else 'strict'}: {best * 1000:.1f} ms for {len(batch)} replies "
              f"({best / len(batch) * 1e6:.0f} µs a reply), mean score {met / len(batch):.3f}")
        for where, rate in SAMPLING.items():
            print(f"    sampling {tokens} tokens at {rate} tokens/s ({where}) ≈ {tokens / rate:.0f} s: "
                  f"scoring is {best / (tokens / rate):.2e} of it")


if __name__ == "__main__":
    main()
