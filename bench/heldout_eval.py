"""The evaluation stage on copies of one model (quantized folders, GGUF files, ONNX-free specs): the
full-precision model is the baseline and each copy a policy, greedy, on the first N held-out
constraint prompts — pass rates with intervals, KL to the baseline, and with a reward model its
win-rate against the baseline. Shared by bench/export.py and bench/serving.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "data/constraints/heldout.jsonl"


def evaluate_copies(specs: dict[str, str], baseline: str, n: int, max_new_tokens: int, reward_model: str | None,
                    out: Path, run_name: str) -> Path:
    """Run `python -m evaluation` on `specs` ({name: model spec}); returns the run folder."""
    policies = ", ".join(f"{{name: {name}, model: '{spec}'}}" for name, spec in specs.items())
    cmd = [sys.executable, "-m", "evaluation", "--config", str(REPO / "configs/evaluation/tiny.yaml"),
           "--run_name", run_name, "--output_root", str(out), "--policies", f"[{policies}]", "--baseline", baseline,
           "--prompts", f"[{{path: {CONSTRAINTS}, rows: '0:{n}'}}]", "--max_prompts", "null", "--decoding", "greedy",
           "--samples_per_prompt", "1", "--max_new_tokens", str(max_new_tokens), "--batch_size", "16",
           "--bootstrap_resamples", "2000", "--trackers", "[]"]
    if reward_model:
        cmd += ["--reward_model", reward_model, "--judges.reward_model", "true"]
    subprocess.run(cmd, cwd=REPO, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    return out / run_name
