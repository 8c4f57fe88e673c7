"""python -m annotation_ui <command> --db labels.db …

  users add NAME --role annotator|admin     (password read from $ANNOTATION_PASSWORD or asked)
  users list | users disable NAME | users enable NAME
  import FILE [--format auto|jsonl|hh] [--limit N] [--batch NAME]   (all or nothing)
  generate PROMPTS --model runs/sft/default/model [--k 4] [--max_new_tokens 128] [--batch NAME]
           [--select random|margin|ensemble --reward_model RM [RM …] --budget N]
           (K sampled candidates per prompt; with --select, only the N tasks the reward model is
           least sure how to rank, handed out most uncertain first)
  export OUT_DIR [--combine all|majority] [--batch NAME]
        (without --batch: every batch but evaluations' `eval:…` ones, which are held out)
  serve [--config configs/annotation/default.yaml] [--host H] [--port P] [--KEY VALUE …]
        (the browser app; any AnnotationConfig field can be overridden, e.g. --overlap 3)

--db (before the command) names the SQLite file or database URL; for `serve` it overrides the
config's `db`.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from common.pipeline import default_model
from common.stage import run_stage

DEFAULT_DB = "runs/annotation/labels.db"


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m annotation_ui", description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default=None, help=f"SQLite file or database URL (postgresql+psycopg://…); default {DEFAULT_DB}")
    sub = ap.add_subparsers(dest="command", required=True)
    users = sub.add_parser("users").add_subparsers(dest="action", required=True)
    add = users.add_parser("add")
    add.add_argument("name")
    add.add_argument("--role", choices=["annotator", "admin"], default="annotator")
    users.add_parser("list")
    for action in ("disable", "enable"):
        users.add_parser(action).add_argument("name")
    imp = sub.add_parser("import")
    imp.add_argument("file")
    imp.add_argument("--format", choices=["auto", "jsonl", "hh"], default="auto")
    imp.add_argument("--limit", type=int, default=None)
    imp.add_argument("--batch", default=None, help="name this import (e.g. round-2); the export can pick it")
    gen = sub.add_parser("generate")
    gen.add_argument("prompts")
    gen.add_argument("--model", default=default_model("sft"), help="model spec: SFT output, default, a folder")
    gen.add_argument("--k", type=int, default=4)
    gen.add_argument("--max_new_tokens", type=int, default=128)
    gen.add_argument("--limit", type=int, default=None)
    gen.add_argument("--batch", default=None, help="name this import (e.g. round-2); the export can pick it")
    gen.add_argument("--select", choices=["random", "margin", "ensemble"], default=None,
                     help="keep only --budget tasks: random, margin (smallest reward gap) or ensemble (the reward "
                     "models disagree most); none = keep every prompt's task")
    gen.add_argument("--reward_model", nargs="+", default=[], help="reward model folder(s) (ensemble: ≥ 2, or an "
                     "ensemble folder from make rm ENSEMBLE=n)")
    gen.add_argument("--budget", type=int, default=None, help="tasks to keep with --select")
    gen.add_argument("--seed", type=int, default=0, help="sampling and random selection seed")
    exp = sub.add_parser("export")
    exp.add_argument("out_dir")
    exp.add_argument("--combine", choices=["all", "majority"], default="all")
    exp.add_argument("--batch", default=None, help="export this batch only")
    exp.add_argument("--floor", type=float, default=None,
                     help="leave out annotators whose gold accuracy or agreement with the majority is under this "
                     "(e.g. 0.75); the counts are printed")
    sub.add_parser("serve", help="start the labelling app", add_help=False)
    return ap


def serve(db: str | None, rest: list[str]) -> None:
    from annotation_ui.app import serve as start
    from annotation_ui.config import AnnotationConfig
    from common.config import parse_args

    if "--config" not in rest:
        rest = ["--config", "configs/annotation/default.yaml", *rest]
    if db:
        rest += ["--db", db]
    cfg = parse_args(AnnotationConfig, rest, prog="python -m annotation_ui serve")
    if "://" not in cfg.db:
        os.makedirs(os.path.dirname(os.path.abspath(cfg.db)), exist_ok=True)
    print(f"annotation app on http://{cfg.host}:{cfg.port}{cfg.root_path}  (database: {cfg.db})", flush=True)
    start(cfg)


def users(store, args) -> None:
    if args.action == "add":
        password = os.environ.get("ANNOTATION_PASSWORD") or getpass.getpass(f"password for {args.name}: ")
        store.add_user(args.name, password, args.role)
        print(f"added {args.role} {args.name}")
    elif args.action == "list":
        for u in store.users():
            print(f"{u.name:20} {u.role:10} {'active' if u.active else 'disabled'}")
    else:
        store.set_active(args.name, args.action == "enable")
        print(f"{args.action}d {args.name}")


def import_tasks(store, args) -> None:
    from annotation_ui.tasks import read_tasks

    tasks, skipped = read_tasks(args.file, args.format, args.limit)
    ids = store.add_tasks(tasks, args.batch)
    print(f"imported {len(ids)} tasks from {args.file}" + (f" ({skipped} unpaired HH rows skipped)" if skipped else ""))


def generate(store, args) -> None:
    from annotation_ui.tasks import generate_tasks

    tasks = generate_tasks(args.model, args.prompts, args.k, args.max_new_tokens, seed=args.seed, limit=args.limit,
                           budget=args.budget, reward_models=args.reward_model, strategy=args.select)
    ids = store.add_tasks(tasks, args.batch)
    chosen = f", the {len(ids)} chosen by {args.select}" if args.select else ""
    print(f"generated {len(ids)} tasks ({args.k} candidates each) from {args.prompts} with {args.model}{chosen}")


def export(store, args) -> None:
    from annotation_ui.export import export as write_export
    from common.data import DataError

    if args.floor is not None and not 0 < args.floor <= 1:
        raise DataError(f"--floor must lie in (0, 1], got {args.floor:g}")
    counts = write_export(store, args.out_dir, args.combine, batch=args.batch, floor=args.floor)
    print(f"exported {counts['pairs']} pairs and {counts['rankings']} rankings to {args.out_dir}")
    for name, reasons in counts["left_out"].items():
        print(f"left out {name} (under the floor {args.floor:g}: {'; '.join(reasons)})")
    if counts["left_out"]:
        print(f"left out {counts['left_out_labels']} rankings by {len(counts['left_out'])} annotator(s)")


COMMANDS = {"users": users, "import": import_tasks, "generate": generate, "export": export}


def main(argv: list[str] | None = None) -> None:
    ap = parser()
    args, rest = ap.parse_known_args(argv)
    if args.command == "serve":
        serve(args.db, rest)
        return
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    from annotation_ui.store import Store

    db = args.db or DEFAULT_DB
    if "://" not in db:
        os.makedirs(os.path.dirname(os.path.abspath(db)), exist_ok=True)
    COMMANDS[args.command](Store(db), args)


if __name__ == "__main__":
    sys.exit(run_stage(main))
