"""One table of the default recipes' figures, read from their run folders.

    python bench/stage_summary.py [runs] [--times stage=seconds ...]

Used by `bench/cuda_stages.sh` (the four default stages on a GPU, one after another) and handy
after any `make ppo` / `make bcq`: SFT and reward-model summaries, PPO's reward and KL over the
first and last fifth of the run with its time split, and BCQ's held-out evaluation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from statistics import mean


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _fmt(x, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def sft_rows(run: Path) -> list[tuple[str, str]]:
    s = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    return [("sft steps", _fmt(s.get("global_step"))), ("sft train loss", _fmt(s.get("train_loss"))),
            ("sft eval loss", _fmt(s.get("eval_loss"))), ("sft train runtime s", _fmt(s.get("train_runtime"), 1))]


def rm_rows(run: Path) -> list[tuple[str, str]]:
    s = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    return [("rm steps", _fmt(s.get("global_step"))), ("rm held-out accuracy", _fmt(s.get("eval_accuracy"))),
            ("rm train runtime s", _fmt(s.get("train_runtime"), 1))]


def ppo_rows(run: Path) -> list[tuple[str, str]]:
    rows = [r for r in _read_jsonl(run / "metrics.jsonl") if "objective/rlhf_reward" in r]
    if not rows:
        return [("ppo", "no metrics")]
    k = max(1, len(rows) // 5)

    def avg(key, part):
        vals = [r[key] for r in part if key in r]
        return mean(vals) if vals else None

    first, last = rows[:k], rows[-k:]
    out = [("ppo steps", str(len(rows)))]
    for key in ("objective/rlhf_reward", "objective/scores", "objective/kl"):
        out.append((f"ppo {key} first/last {k}", f"{_fmt(avg(key, first))} → {_fmt(avg(key, last))}"))
    for key in ("tokens_per_second", "time/generate", "time/score", "time/train", "response_length"):
        out.append((f"ppo mean {key}", _fmt(avg(key, rows), 2)))
    return out


def bcq_rows(run: Path) -> list[tuple[str, str]]:
    path = run / "eval.json"
    if not path.is_file():
        return [("bcq", "no eval.json")]
    e = json.loads(path.read_text())
    rm = e["reward_model"]

    def ci(d):
        return f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"

    out = [("bcq RM score (BCQ)", ci(rm["bcq"])), ("bcq RM score (G)", ci(rm["behaviour"])),
           ("bcq BCQ − G (paired)", ci(rm["bcq_minus_behaviour"])),
           ("bcq overestimation", _fmt(e.get("overestimation"))), ("bcq KL to G", _fmt(e.get("kl_to_behaviour"), 2))]
    for t in e.get("tau_sweep", []):
        out.append((f"bcq τ={t['tau']} BCQ − G", ci(t["minus_behaviour"])))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="?", default="runs")
    ap.add_argument("--times", nargs="*", default=[], help="stage=seconds pairs measured by the caller")
    args = ap.parse_args(argv)
    root = Path(args.runs)
    rows = [(f"wall s {k}", v) for k, v in (t.split("=", 1) for t in args.times)]
    rows += sft_rows(root / "sft/default") + rm_rows(root / "reward_model/default")
    rows += ppo_rows(root / "ppo/default") + bcq_rows(root / "bcq/default")
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


if __name__ == "__main__":
    main()
