"""What an ensemble of reward models costs a PPO step: the same PPO run with 1 and with N members.

Each arm runs `python -m ppo` for a few steps from the same recipe and seed; the only change is
`reward_model: [RM] × members` (one folder repeated: the same compute as N different members of
one backbone, with identical scores, so the runs stay the same but for the scoring). Read from each
run's metrics: `time/proxy` (the seconds the reward-model passes took in a step), the step's time
(generate + score + train) and the reward passes' share of it; the first step is left out
(warm-up). Prints one table.

    .venv/bin/python bench/reward_ensemble_cost.py --reward_model runs/reward_model/default/model \
        --policy default --steps 4                        # the default setup (≈ 20 s a step on 2 cores)
    .venv/bin/python bench/reward_ensemble_cost.py --config configs/ppo/tiny.yaml --reward_model RM
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_arm(args, members: int, out: Path) -> list[dict]:
    name = f"ens-{members}"
    rms = "[" + ", ".join([args.reward_model] * members) + "]"
    cmd = [args.python, "-m", "ppo", "--config", args.config, "--reward_model", rms, "--steps", str(args.steps),
           "--output_root", str(out), "--run_name", name, "--overwrite", "true", "--trackers", "[]",
           "--save_steps", str(args.steps), *(["--policy", args.policy] if args.policy else [])]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)
    rows = [json.loads(line) for line in (out / name / "metrics.jsonl").read_text().splitlines()]
    return rows[1:] if len(rows) > 1 else rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/ppo/default.yaml")
    parser.add_argument("--reward_model", required=True)
    parser.add_argument("--policy", default=None, help="policy spec (default: the recipe's)")
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--output_root", default="runs/bench/ensemble-cost")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    out = REPO / args.output_root
    table = []
    for members in (1, args.members):
        rows = run_arm(args, members, out)
        rm = sum(r["time/proxy"] for r in rows) / len(rows)
        step = sum(r["time/generate"] + r["time/score"] + r["time/train"] for r in rows) / len(rows)
        table.append((members, rm, step, rows[-1]["perf/peak_memory_gb"]))
    print(f"\n{'members':>7}  {'reward passes s/step':>20}  {'step s':>7}  {'share':>6}  {'peak GB':>7}")
    for members, rm, step, peak in table:
        print(f"{members:>7}  {rm:>20.2f}  {step:>7.2f}  {100 * rm / step:>5.1f}%  {peak:>7.2f}")
    (_, rm1, step1, _), (n, rm_n, step_n, _) = table
    print(f"{n} members against 1: reward passes ×{rm_n / rm1:.2f}, step ×{step_n / step1:.2f}")


if __name__ == "__main__":
    main()
