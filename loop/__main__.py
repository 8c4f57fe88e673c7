"""make loop ROUND=n  (= python -m loop --config configs/loop/default.yaml --round n)

One round of the closed RLHF loop. Round 0 samples K candidates per prompt from the starting
policy and puts the `budget` tasks the starting reward model is least sure how to rank into the
annotation app as batch `round-1`. Round n ≥ 1, once people have labelled round n:

  1. labels    export every label so far (rounds 1..n; annotators under the agreement floor left out)
  2. reward    train the reward model on them, starting from round n−1's (warm start; the
               by-prompt validation split is hashed, so it stays the same across rounds)
  3. policy    PPO from round n−1's policy against the new reward model
  4. eval      the evaluation stage: the new policy against the previous one on held-out prompts
  5. tasks     sample from the new policy, keep the tasks the new reward model is least sure of,
               as batch round-(n+1), most uncertain first

Each step's output lives in <root>/round-<n>/ and is marked done when complete; a round killed
half-way runs again from the step it stopped in (PPO and the reward model resume from their
checkpoints). Stages run as their own commands, so each one's log and errors are its own.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

from common.config import ConfigError, parse_args
from common.data import DataError
from common.pipeline import EVAL_FILE, model_folder, run_folder, win_rate
from common.stage import run_stage
from loop.config import LoopConfig

log = logging.getLogger("loop")
STEPS = ("labels", "reward", "policy", "eval", "tasks")
REWARD, POLICY, EVAL = "reward", "policy", "eval"  # each round's run folders: round-<n>/<name>/


def round_dir(cfg: LoopConfig, n: int) -> Path:
    return Path(cfg.root) / f"round-{n}"


def batch_name(n: int) -> str:
    return f"round-{n}"


def previous(cfg: LoopConfig, n: int) -> tuple[str, str]:
    """(policy, reward model) round n starts from: round n−1's, or the configured ones for round 1."""
    if n <= 1:
        return cfg.policy, cfg.reward_model
    before = round_dir(cfg, n - 1)
    policy, rm = model_folder("ppo", POLICY, before), model_folder("reward_model", REWARD, before)
    if not (policy.is_dir() and rm.is_dir()):
        raise DataError(f"round {n} starts from round {n - 1}'s policy and reward model, which {before} does not "
                        f"hold yet: run `make loop ROUND={n - 1}` first")
    return str(policy), str(rm)


def run(step: str, module: str, args: list[str]) -> None:
    """`python -m module args` — its output is the user's to see; a failure stops the round here."""
    log.info("loop step %s: python -m %s %s", step, module, " ".join(args))
    proc = subprocess.run([sys.executable, "-m", module, *args])
    if proc.returncode != 0:
        raise DataError(f"loop step '{step}' failed (python -m {module} exited with {proc.returncode}); fix it and "
                        "run the same round again: finished steps are kept")


def done(folder: Path, step: str) -> bool:
    return (folder / f"{step}.done").is_file()


def mark(folder: Path, step: str, **info) -> None:
    (folder / f"{step}.done").write_text(json.dumps(info) + "\n")


# ----------------------------------------------------------------------------- the steps


def export_labels(cfg: LoopConfig, n: int, folder: Path) -> int:
    """Every label so far → folder/labels/rankings.jsonl (written whole or not at all)."""
    from annotation_ui.export import export
    from annotation_ui.store import Store

    store = Store(cfg.db)
    waiting = [t for t in store.tasks() if t.batch == batch_name(n)]
    if not waiting:
        raise DataError(f"round {n} has no tasks in {cfg.db}: run `make loop ROUND={n - 1}` to choose them")
    labelled = {lab.task_id for lab in store.labels() if lab.ranks is not None}
    if not any(t.id in labelled for t in waiting):
        raise DataError(f"round {n} has no labels yet: its {len(waiting)} tasks wait in the annotation app")
    tmp, final = folder / "labels.tmp", folder / "labels"
    shutil.rmtree(tmp, ignore_errors=True)
    counts = export(store, tmp, "all", floor=cfg.floor)
    if counts["rankings"] == 0:
        shutil.rmtree(tmp)
        raise DataError(f"round {n}: no labels left to train on (every annotator under the floor {cfg.floor}?)")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for name, reasons in counts["left_out"].items():
        log.warning("labels of %s left out (under the agreement floor %s: %s)", name, cfg.floor, "; ".join(reasons))
    return counts["rankings"]


def choose_tasks(cfg: LoopConfig, n: int, folder: Path, policy: str, reward_model: str) -> None:
    """Sample from `policy`, keep the budget the reward model is least sure of, as batch round-(n+1)."""
    from annotation_ui.store import Store

    nxt = batch_name(n + 1)
    if any(t.batch == nxt for t in Store(cfg.db).tasks()):
        log.info("batch %s is already in the annotation app (a resumed round): not generated again", nxt)
        return
    pool = folder / "prompts.jsonl"  # the candidate pool: every prompt file's rows, as one file
    with pool.open("w") as out:
        for path in cfg.prompts:
            text = Path(path).read_text(encoding="utf-8") if Path(path).is_file() else None
            if text is None:
                raise DataError(f"prompts: {path} not found")
            out.write(text if text.endswith("\n") else text + "\n")
    run("tasks", "annotation_ui", ["--db", cfg.db, "generate", str(pool), "--model", policy, "--k", str(cfg.k),
                                   "--max_new_tokens", str(cfg.max_new_tokens), "--select", cfg.select,
                                   "--reward_model", reward_model, "--budget", str(cfg.budget), "--batch", nxt,
                                   "--seed", str(cfg.seed + n)])


def check_inputs(cfg: LoopConfig, policy: str, rm: str) -> None:
    """Everything that can be wrong before a round writes anything: one line each."""
    from annotation_ui.tasks import check_selection
    from common.data import read_jsonl
    from common.models import resolve_model

    try:
        resolve_model(policy)
    except Exception as err:  # noqa: BLE001 — one line naming the spec
        raise DataError(f"policy {policy}: {str(err).splitlines()[0]}") from None
    prompts = 0
    for path in cfg.prompts:
        prompts += sum(1 for _ in read_jsonl(path))
    check_selection(cfg.select, cfg.budget, [rm], prompts, " + ".join(cfg.prompts))


def run_round(cfg: LoopConfig) -> Path:
    n = cfg.round
    folder = round_dir(cfg, n)
    policy, rm = previous(cfg, n)  # before anything is written: round n−1 must be complete
    check_inputs(cfg, policy, rm)
    folder.mkdir(parents=True, exist_ok=True)
    if n == 0:
        if not done(folder, "tasks"):
            choose_tasks(cfg, 0, folder, policy, rm)
            mark(folder, "tasks", batch=batch_name(1))
        return folder
    if not done(folder, "labels"):
        rankings = export_labels(cfg, n, folder)
        mark(folder, "labels", rankings=rankings)
    if not done(folder, "reward"):
        data = json.dumps([{"path": str(folder / "labels" / "rankings.jsonl"), "format": "rankings"}])
        run("reward", "reward_model", ["--config", cfg.rm_recipe, "--model", rm, "--data", data, "--val_split", "hash",
                                       "--output_root", str(folder), "--run_name", REWARD, *cfg.rm_args])
        mark(folder, "reward", model=str(model_folder("reward_model", REWARD, folder)))
    new_rm = str(model_folder("reward_model", REWARD, folder))
    if not done(folder, "policy"):
        run("policy", "ppo", ["--config", cfg.ppo_recipe, "--policy", policy, "--reward_model", new_rm,
                              "--output_root", str(folder), "--run_name", POLICY, *cfg.ppo_args])
        mark(folder, "policy", model=str(model_folder("ppo", POLICY, folder)))
    new_policy = str(model_folder("ppo", POLICY, folder))
    if not done(folder, "eval"):
        policies = json.dumps([{"name": "previous", "model": policy}, {"name": "new", "model": new_policy}])
        run("eval", "evaluation", ["--config", cfg.eval_recipe, "--policies", policies, "--baseline", "previous",
                                   "--kl_reference", "previous", "--reward_model", new_rm, "--output_root", str(folder),
                                   "--run_name", EVAL, "--overwrite", "true", *cfg.eval_args])
        mark(folder, "eval", report=str(run_folder("evaluation", EVAL, folder) / EVAL_FILE))
    if not done(folder, "tasks"):
        choose_tasks(cfg, n, folder, new_policy, new_rm)
        mark(folder, "tasks", batch=batch_name(n + 1))
    return folder


def summary(cfg: LoopConfig, folder: Path) -> str:
    report = run_folder("evaluation", EVAL, folder) / EVAL_FILE
    lines = [f"loop round {cfg.round} done: {folder}"]
    if report.is_file():
        win = win_rate(json.loads(report.read_text()), "new") or {}
        if win:
            lines.append(f"  new policy vs previous, held-out win-rate by the new reward model: "
                         f"{100 * win['mean']:.0f}% [{100 * win['low']:.0f}, {100 * win['high']:.0f}]")
    lines.append(f"  next: annotators label batch {batch_name(cfg.round + 1)} in the annotation app, then "
                 f"make loop ROUND={cfg.round + 1}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(LoopConfig, argv, prog="python -m loop")
    for path in cfg.prompts:
        if not Path(path).is_file():
            raise ConfigError(f"prompts: {path} not found")
    folder = run_round(cfg)
    print(summary(cfg, folder))


if __name__ == "__main__":
    sys.exit(run_stage(main))
