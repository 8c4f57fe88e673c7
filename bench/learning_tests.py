"""The learning tests' margins over seeds: how much each toy rule reward rises, per estimator and
critic, over several seeds — so a test's threshold can sit well inside the worst case on any CPU
(AMX and AVX-512 machines compute fp32 matrix products differently, so seeds stand in for machines).

    python bench/learning_tests.py [--seeds 0 1 2 3] [--steps 40]

Prints, per setting, the gain (mean of the last 10 steps − mean of the first 5) for each seed, its
minimum, and the threshold tests/test_ppo_trainer.py uses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

SETTINGS = {  # name → the overrides of tests/test_ppo_trainer.py's learning tests
    "gae-separate": ("--kl_coef", "0.05", "--value_model", "separate"),
    "gae-policy_head": ("--kl_coef", "0.05", "--value_model", "policy_head"),
    **{est: ("--kl_coef", "0.05", "--advantage_estimator", est, "--samples_per_prompt", "4", "--prompts_per_step", "4",
             "--mini_batch_size", "16") for est in ("grpo", "rloo", "reinforce_pp", "reinforce_baseline")},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS))
    args = ap.parse_args()
    from test_ppo_trainer import PROMPTS, gain, make_trainer, target_token_rate

    from common.models.tiny import build_tiny_model

    model_dir = build_tiny_model(Path("/tmp/learning-tests/tiny-llama"))
    for name in args.settings:
        gains = []
        for seed in args.seeds:
            trainer = make_trainer(model_dir, target_token_rate(torch.arange(100, 164)), *SETTINGS[name], seed=seed)
            prompts = PROMPTS if "gae" in name else PROMPTS[:4]
            gains.append(gain([trainer.step(prompts) for _ in range(args.steps)]))
        print(f"{name:20} gains {' '.join(f'{g:+.3f}' for g in gains)}  min {min(gains):+.3f}", flush=True)


if __name__ == "__main__":
    main()
