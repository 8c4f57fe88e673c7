"""Human evaluation through the annotation app: blind comparison tasks out, win-rates back.

    python -m evaluation.human tasks  --run runs/evaluation/default --db runs/annotation/labels.db
    python -m evaluation.human report --run runs/evaluation/default --db runs/annotation/labels.db

`tasks` turns a finished evaluation's replies into one task per prompt holding one reply per
policy (sample index `--sample`), written to `<run>/human_tasks.jsonl` and loaded into the app as
batch `eval:<eval id>`. The app shows the replies in an order shuffled per annotator and never
shows which policy wrote which; the policy names stay in the task's server-side `model_ids`.
`report` exports that batch's finished labels through the app's own export, and turns each
annotator's ranking into paired outcomes against the baseline (better rank = win, equal = ½):
win-rates with 95% bootstrap intervals over prompts, overall and per domain, and the annotators'
agreement (`annotation_ui.agreement`), into `<run>/human.json`.

The hand-off is the app's command line and its export folder: this stage does not open the
annotation database itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from common.data import DataError, read_jsonl
from common.pipeline import EVAL_FILE
from common.stage import run_stage
from common.stats import win_rate

EMPTY_REPLY = "(empty reply)"  # the app refuses empty texts; an empty reply is still a reply to rank
TASKS_FILE = "human_tasks.jsonl"
HUMAN_FILE = "human.json"


def _read_report(run_dir: Path) -> dict:
    path = run_dir / EVAL_FILE
    if not path.is_file():
        raise DataError(f"{run_dir}: no finished evaluation (no eval.json); `python -m evaluation` makes one")
    return json.loads(path.read_text())


def _annotation(db: str, *args: str) -> str:
    """Run `python -m annotation_ui --db DB ARGS` and return what it printed; its error line on failure."""
    proc = subprocess.run([sys.executable, "-m", "annotation_ui", "--db", db, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise DataError(f"annotation app ({' '.join(args[:1])}): {lines[-1] if lines else 'failed'}")
    return proc.stdout


def build_tasks(run_dir: Path, report: dict, sample: int = 0) -> list[dict]:
    """One task row per prompt: the policies' replies of sample index `sample`, in policy order."""
    names = list(report["policies"])
    replies: dict[int, dict[str, dict]] = defaultdict(dict)
    for _, row in read_jsonl(run_dir / "samples.jsonl"):
        if row["sample"] == sample:
            replies[row["prompt_index"]][row["policy"]] = row
    if not replies:
        raise DataError(f"{run_dir / 'samples.jsonl'}: no replies with sample index {sample}")
    tasks = []
    for index, by_policy in sorted(replies.items()):
        if set(by_policy) != set(names):
            continue
        first = by_policy[names[0]]
        tasks.append({
            "prompt": first["prompt"], "domain": first["domain"], "model_ids": names,
            "responses": [by_policy[n]["reply"].strip() or EMPTY_REPLY for n in names],
            "prompt_index": index,
        })
    return tasks


def load_tasks(run_dir: Path, report: dict, db: str, sample: int = 0) -> dict:
    """Write `<run>/human_tasks.jsonl` and import it into the app's database as `eval:<eval id>`."""
    if len(report["policies"]) > 8:
        raise DataError(f"{len(report['policies'])} policies: an annotation task shows at most 8 replies")
    tasks = build_tasks(run_dir, report, sample)
    path = run_dir / TASKS_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in tasks))
    tmp.replace(path)
    batch = f"eval:{report['eval_id']}"
    _annotation(db, "import", str(path.resolve()), "--batch", batch)
    return {"db": db, "batch": batch, "tasks": len(tasks), "file": str(path), "sample": sample}


def outcomes(rankings: list[dict], baseline: str) -> dict[str, list[tuple[float, str, str]]]:
    """policy → [(outcome against the baseline, prompt key, domain)] for every annotator's ranking.

    A ranking's `ranks` follow the task's original response order, the order of `model_ids`."""
    out: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
    for row in rankings:
        ids, ranks = row["model_ids"], row["ranks"]
        if baseline not in ids:
            continue
        base = ranks[ids.index(baseline)]
        for name, rank in zip(ids, ranks):
            if name != baseline:
                value = 0.5 if rank == base else 1.0 if rank < base else 0.0
                out[name].append((value, str(row["task_id"]), row.get("domain") or "general"))
    return out


def human_report(rankings: list[dict], baseline: str, seed: int = 0) -> dict:
    """Win-rates over the baseline (interval over prompts) overall and per domain, and agreement."""
    from annotation_ui.agreement import quality_report

    by_task: dict[int, dict[str, list[int]]] = defaultdict(dict)
    for row in rankings:
        by_task[row["task_id"]][row["annotator"]] = row["ranks"]
    comparisons = {}
    for name, rows in outcomes(rankings, baseline).items():
        values, where, domains = zip(*rows)
        by_domain = defaultdict(list)
        for v, w, d in rows:
            by_domain[d].append((v, w))
        comparisons[name] = {
            "win_rate": win_rate(values, where, seed),
            "by_domain": {d: win_rate([v for v, _ in vs], [w for _, w in vs], seed) for d, vs in sorted(by_domain.items())},
        }
    quality = quality_report(dict(by_task))
    return {
        "baseline": baseline,
        "labels": len(rankings),
        "tasks": len(by_task),
        "annotators": sorted({r["annotator"] for r in rankings}),
        "comparisons": comparisons,
        "agreement": {k: quality[k] for k in ("krippendorff_alpha", "fleiss_kappa", "cohen_kappa_mean",
                                              "agreement_with_majority")},
    }


def read_labels(run_dir: Path, db: str) -> list[dict]:
    """The evaluation batch's finished labels, through the app's export (into a temporary folder)."""
    report = _read_report(run_dir)
    with tempfile.TemporaryDirectory() as tmp:
        _annotation(db, "export", tmp, "--batch", f"eval:{report['eval_id']}")
        return [row for _, row in read_jsonl(Path(tmp) / "rankings.jsonl")]


def format_report(human: dict) -> str:
    def pct(ci: dict) -> str:
        return f"{100 * ci['mean']:.0f}% [{100 * ci['low']:.0f}, {100 * ci['high']:.0f}] ({ci['n']} prompts)"

    lines = [f"{human['labels']} labels on {human['tasks']} tasks by {len(human['annotators'])} annotators"]
    for name, c in human["comparisons"].items():
        lines.append(f"{name} vs {human['baseline']}: people prefer it in {pct(c['win_rate'])}")
        lines += [f"  {d}: {pct(ci)}" for d, ci in c["by_domain"].items()]
    a = human["agreement"]
    lines.append(f"agreement: Krippendorff's α {a['krippendorff_alpha']:.2f}, Fleiss' κ {a['fleiss_kappa']:.2f}, "
                 f"mean Cohen's κ {a['cohen_kappa_mean']:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m evaluation.human", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["tasks", "report"])
    parser.add_argument("--run", required=True, help="a finished evaluation's run folder")
    parser.add_argument("--db", required=True, help="the annotation app's database (file or URL)")
    parser.add_argument("--sample", type=int, default=0, help="tasks: which sample index of each prompt to show")
    args = parser.parse_args(argv)
    run_dir = Path(args.run)
    report = _read_report(run_dir)
    if args.command == "tasks":
        info = load_tasks(run_dir, report, args.db, args.sample)
        print(f"{info['tasks']} comparison tasks in {args.db} as batch {info['batch']} ({info['file']})")
        return
    rankings = read_labels(run_dir, args.db)
    if not rankings:
        raise DataError(f"no finished labels yet for batch eval:{report['eval_id']} in {args.db}")
    human = human_report(rankings, report["baseline"], report["seeds"]["seed"])
    path = run_dir / HUMAN_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(human, indent=2, ensure_ascii=False))
    tmp.replace(path)
    print(format_report(human))
    print(f"written to {path}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
