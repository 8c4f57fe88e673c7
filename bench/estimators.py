"""PPO vs GRPO vs RLOO on the default setup, at the same number of sampled replies.

Each estimator trains from the default PPO recipe (SFT policy, default reward model, per-domain
mixed rewards, 40 steps × 8 replies of ≤ 48 tokens, LoRA, the same learning rate and epochs);
only what the estimator needs changes:

  gae   PPO with a critic: 4 prompts × 2 replies a step, per-token k1 KL in the reward (the recipe)
  grpo  2 prompts × 4 replies (a group per prompt), KL to the reference as a k3 loss term
  rloo  2 prompts × 4 replies, leave-one-out baseline, k1 KL in the sequence reward

then one evaluation run (configs/evaluation/estimators.yaml) puts all three against the SFT
model on the 60 held-out prompts. Prints one table: held-out win-rate over SFT and the
length-controlled one (95% intervals over prompts), KL to SFT, the training reward at the end,
replies' tokens generated, wall time and peak memory (this process tree's peak RSS on a CPU,
torch.cuda.max_memory_allocated on a GPU).

    .venv/bin/python bench/estimators.py                 # ≈ 45 min on 2 CPU cores
    .venv/bin/python bench/estimators.py --only grpo     # retrain one; evaluate all
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ESTIMATORS = {
    "gae": [],
    "grpo": ["--advantage_estimator", "grpo", "--prompts_per_step", "2", "--samples_per_prompt", "4",
             "--kl_in_reward", "false", "--kl_estimator", "k3"],
    "rloo": ["--advantage_estimator", "rloo", "--prompts_per_step", "2", "--samples_per_prompt", "4"],
}
NAMES = {"gae": "ppo", "grpo": "grpo", "rloo": "rloo"}


def train(estimator: str, python: str) -> float:
    cmd = [python, "-m", "ppo", "--config", "configs/ppo/default.yaml", "--run_name", f"cmp-{estimator}",
           "--overwrite", "true", *ESTIMATORS[estimator]]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True)
    return time.perf_counter() - start


def training_figures(estimator: str) -> dict:
    rows = [json.loads(line) for line in (REPO / f"runs/ppo/cmp-{estimator}/metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "objective/scores" in r]
    last = rows[-10:]
    batch = 8  # replies a step, in every arm
    return {
        "reward_last10": sum(r["objective/scores"] for r in last) / len(last),
        "tokens": sum(r["response_length"] * batch for r in rows),
        "train_s": sum(r["time/generate"] + r["time/score"] + r["time/train"] for r in rows),
        "peak_gb": max(r.get("perf/peak_memory_gb", float("nan")) for r in rows),
    }


def ci(x: dict, scale: float = 100.0, fmt: str = "{:.0f}") -> str:
    if x.get("withheld"):  # a length-controlled win-rate the data cannot support; eval.json says why
        return "withheld"
    return f"{fmt.format(x['mean'] * scale)} [{fmt.format(x['low'] * scale)}, {fmt.format(x['high'] * scale)}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=list(ESTIMATORS), help="train only these (the others must exist)")
    ap.add_argument("--skip_training", action="store_true", help="evaluate the existing runs only")
    args = ap.parse_args()
    python = sys.executable
    if not (REPO / "runs/sft/default/model").is_dir() or not (REPO / "runs/reward_model/default/model").is_dir():
        sys.exit("runs/sft/default and runs/reward_model/default must exist first: make sft rm")
    wall = {}
    if not args.skip_training:
        for est in args.only or ESTIMATORS:
            wall[est] = train(est, python)
    subprocess.run([python, "-m", "evaluation", "--config", "configs/evaluation/estimators.yaml"], cwd=REPO, check=True)
    ev = json.loads((REPO / "runs/evaluation/estimators/eval.json").read_text())
    print("\nestimator  win vs SFT %  length-controlled %  KL to SFT (nats)   train reward (last 10)  "
          "tokens  wall s  peak GiB")
    for est in ESTIMATORS:
        name = NAMES[est]
        fig = training_figures(est)
        comp, pol = ev["comparisons"][name], ev["policies"][name]
        print(f"{name:<9}  {ci(comp['win_rate']):<12}  {ci(comp['lc_win_rate']):<19}  "
              f"{ci(pol['kl'], 1, '{:.2f}'):<17}  {fig['reward_last10']:>+22.3f}  {fig['tokens']:>6.0f}  "
              f"{wall.get(est, fig['train_s']):>6.0f}  {fig['peak_gb']:>8.2f}")
    print("\nwall s: the whole run when trained here, else the sum of its steps' rollout + scoring + update time")


if __name__ == "__main__":
    main()
