"""Benchmark: the evaluation stage on 2 policies × 60 held-out prompts × 2 samples × 64 tokens with
the default model, judged by the default reward model — wall time and where it goes.

The policies are the SFT output and the default model it started from (the default model twice
when `make sft` has not run); the judge is the default reward model when `make rm` has run, else
none. Each step's time comes from the stage's own `timing_seconds`.

    .venv/bin/python bench/eval_speed.py [--prompts 60] [--samples 2] [--max_new_tokens 64] [--batch_size 30]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=60)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=30)
    args = parser.parse_args()

    import torch

    from evaluation.__main__ import main as evaluate

    sft = REPO / "runs/sft/default/model"
    rm = REPO / "runs/reward_model/default/model"
    policy = str(sft) if sft.is_dir() else "default"
    out = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    argv = ["--config", str(REPO / "configs/evaluation/default.yaml"), "--output_root", str(out), "--run_name", "bench",
            "--policies", f"[{{name: base, model: default}}, {{name: policy, model: {policy}}}]", "--baseline", "base",
            "--max_prompts", str(args.prompts), "--samples_per_prompt", str(args.samples),
            "--max_new_tokens", str(args.max_new_tokens), "--batch_size", str(args.batch_size), "--wandb_mode", "disabled"]
    if rm.is_dir():
        argv += ["--reward_model", str(rm)]
    else:
        argv += ["--reward_model", "null", "--judges.reward_model", "false"]
    start = time.perf_counter()
    evaluate(argv)
    wall = time.perf_counter() - start
    report = json.loads((out / "bench/eval.json").read_text())
    timing = report["timing_seconds"]
    tokens = sum(p["length"]["mean"] * p["replies"] for p in report["policies"].values())
    print(f"\nevaluation of 2 policies × {report['prompts']['total']} prompts × {args.samples} samples × "
          f"≤ {args.max_new_tokens} tokens ({'reward model: ' + str(rm) if rm.is_dir() else 'no reward model'}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads)")
    print(f"wall time (process, with writing the outputs): {wall:.1f} s; the stage's own total: {timing['total']:.1f} s")
    for key, seconds in timing.items():
        if key != "total":
            print(f"  {key:24} {seconds:7.1f} s  {100 * seconds / timing['total']:5.1f}%")
    sampling = sum(v for k, v in timing.items() if k.startswith("sample/"))
    print(f"  reply tokens: {tokens:.0f}, {tokens / sampling:.0f} per second of sampling (loading each model included)")


if __name__ == "__main__":
    main()
