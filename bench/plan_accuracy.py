"""The memory planner against measured peaks: every stage's default and tiny recipe, a few steps
each on this CPU, in a process of its own.

Planned: the plan the stage itself makes at start (common.planning.preflight, called by common.stage.start), total per rank.
Measured: the growth, from just before the stage's main() (its libraries — transformers, TRL,
PEFT, datasets — already imported) to its highest value, sampled every 20 ms by a thread, of

- **tensor memory** (the figure the error is computed on): the process's anonymous pages plus the
  resident pages of mapped model files (*.safetensors, *.bin, *.gguf), read from /proc/self/smaps.
  That is where tensors live on a CPU: heap and mmap'd allocations, and the weights transformers
  maps from fp32 safetensors files instead of copying them (a frozen model's weights are
  file-backed pages that appear when first used). It leaves out library code and data paged in
  on first use — shared, clean, evictable pages that a GPU's allocator does not see either.
- **VmRSS** (all resident pages), for reference.

Why not torch's allocator statistics: torch keeps none for its CPU allocator, and tracemalloc
sees only Python objects. The error is (planned − measured) / measured.

    .venv/bin/python bench/plan_accuracy.py                 # every stage, default and tiny (≈ 15 min)
    .venv/bin/python bench/plan_accuracy.py --only ppo sft  # some stages
The default recipes need their inputs (make sft rm; BCQ's logs) and are skipped without them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GiB = 2**30

# stage → {recipe: overrides that keep the run to a few steps}
SHORT = {
    "sft": ["--max_steps", "2", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1"],
    "reward_model": ["--max_steps", "2", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1"],
    "dpo": ["--max_steps", "2", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1",
            "--val_fraction", "0.01"],
    "ppo": ["--steps", "2", "--save_steps", "2"],
    "bcq_offline": ["--steps", "4", "--save_steps", "4", "--eval_prompts", "8", "--eval_taus", "[0.3]"],
    "evaluation": ["--max_prompts", "30"],
}
NEEDS = {  # default recipes stand on earlier runs
    "reward_model": [], "sft": [],
    "dpo": ["runs/sft/default/model"],
    "ppo": ["runs/sft/default/model", "runs/reward_model/default/model"],
    "bcq_offline": ["runs/sft/default/model", "runs/reward_model/default/model"],
    "evaluation": ["runs/sft/default/model", "runs/ppo/default/model", "runs/reward_model/default/model"],
}


WEIGHT_FILES = (".safetensors", ".bin", ".gguf", ".pt")


def memory() -> tuple[int, int]:
    """(tensor memory, VmRSS) in bytes: anonymous pages + resident pages of mapped model files, and
    all resident pages (see the module's doc)."""
    tensors = rss = 0
    weights_file = False
    with open("/proc/self/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                weights_file = line.rstrip().endswith(WEIGHT_FILES)
            elif line.startswith("Rss:"):
                kb = int(line.split()[1])
                rss += kb
                if weights_file:
                    tensors += kb
            elif line.startswith("Anonymous:") and not weights_file:
                tensors += int(line.split()[1])
    return tensors * 1024, rss * 1024


def child(stage: str, argv: list[str], out: str) -> None:
    """Run one stage in this process and write {planned, measured} to `out`."""
    import importlib

    module = importlib.import_module(f"{stage}.__main__")
    import common.planning.preflight as planning

    # the libraries a stage imports inside main() (their code and data pages are not the run's memory)
    for lib in ("trl", "peft", "datasets", "transformers.models.llama.modeling_llama", "common.rewards.scorer", "tqdm"):
        importlib.import_module(lib)

    seen = {}

    real = planning.preflight

    def spy(cfg, plan, name):
        seen["plan"] = real(cfg, plan, name)
        return seen["plan"]

    planning.preflight = spy  # common.stage.start looks it up at call time
    peak, stop = [0, 0], threading.Event()

    def sample():
        while not stop.is_set():
            tensors, resident = memory()
            peak[0], peak[1] = max(peak[0], tensors), max(peak[1], resident)
            time.sleep(0.02)

    base = memory()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        module.main(argv)
    finally:
        stop.set()
        thread.join()
    p = seen.get("plan")
    result = {"measured": peak[0] - base[0], "vmrss": peak[1] - base[1]}
    if p is not None:
        result.update(planned=p.total, resident=p.resident, phase=p.peak_phase[0], phase_bytes=p.peak_phase[1])
    Path(out).write_text(json.dumps(result))


def run(stage: str, recipe: str, tmp: Path) -> dict | None:
    out = tmp / f"{stage}-{Path(recipe).stem}.json"
    run_root = tmp / "runs" / stage
    args = ["--config", recipe, "--run_name", f"plan-bench-{Path(recipe).stem}", "--overwrite", "true",
            "--output_root", str(run_root), "--wandb_mode", "disabled", *SHORT[stage]]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, __file__, "--child", stage, str(out), *args], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0 or not out.exists():
        print(f"  {stage} {recipe}: failed\n{proc.stderr[-2000:]}", flush=True)
        return None
    return json.loads(out.read_text())


def _error(planned: int, measured: int) -> str:
    return f"{100 * (planned - measured) / measured:>+7.0f}%" if measured > 0 else f"{'—':>8}"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[4:], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=list(SHORT), help="these stages only")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="plan-bench-") as tmp:
        for stage in args.only or SHORT:
            for name in ("tiny", "default"):
                recipe = f"configs/{stage}/{name}.yaml"
                if not (REPO / recipe).exists():
                    continue
                missing = [n for n in NEEDS[stage] if name == "default" and not (REPO / n).is_dir()]
                if missing:
                    print(f"  {recipe}: skipped, needs {', '.join(missing)}", flush=True)
                    continue
                t0 = time.perf_counter()
                r = run(stage, recipe, Path(tmp))
                if r and "planned" in r:
                    rows.append((recipe, r))
                    print(f"  {recipe}: planned {r['planned'] / GiB:.3f} GiB, measured {r['measured'] / GiB:.3f} GiB "
                          f"(VmRSS {r['vmrss'] / GiB:.3f})"
                          f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"\n{'recipe':<36}{'planned GiB':>12}{'tensors GiB':>13}{'error':>8}{'VmRSS GiB':>11}{'error':>8}  peak phase")
    for recipe, r in rows:
        print(f"{recipe:<36}{r['planned'] / GiB:>12.3f}{r['measured'] / GiB:>13.3f}{_error(r['planned'], r['measured'])}"
              f"{r['vmrss'] / GiB:>11.3f}{_error(r['planned'], r['vmrss'])}  {r['phase']}")
    print("\nmeasured: growth over the run, sampled every 20 ms — tensors: anonymous pages + mapped model files' "
          "resident pages; VmRSS: all resident pages. planned: the stage's own plan at start")


if __name__ == "__main__":
    main()
