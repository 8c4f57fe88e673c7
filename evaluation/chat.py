"""Chat with an evaluation's policies side by side, before trusting its win-rate.

    python -m evaluation.chat --run runs/evaluation/ppo-vs-sft [--port 7861] [--max_new_tokens 256]
    python -m evaluation.chat --config configs/evaluation/default.yaml      # a recipe not run yet

Reads the policies of the run's `config.yaml` (or of a recipe) and opens `serving.chat`'s page with
one column per language-model policy, every column answering the same message. BCQ policies decode
under their batch constraint, which this page does not do: they are left out, with a note.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.config import ConfigError, load_yaml
from common.models import ModelNotFoundError, resolve_model
from evaluation.policies import is_bcq


def policies_of(run: str | None, config: str | None) -> list[tuple[str, str]]:
    """(name, model spec) of each language-model policy of an evaluation run folder or recipe."""
    path = Path(config) if config else Path(run) / "config.yaml"
    if run and not path.is_file():
        raise ConfigError(f"{run}: no config.yaml — not an evaluation run folder (runs/evaluation/<name>)")
    data = load_yaml(path)
    policies = data.get("policies")
    if not isinstance(policies, list) or not policies:
        raise ConfigError(f"{path}: no policies to chat with")
    out = []
    for p in policies:
        if not isinstance(p, dict) or "name" not in p or "model" not in p:
            raise ConfigError(f"{path}: each policy needs a name and a model, got {p!r}")
        if is_bcq(resolve_model(str(p["model"]))):
            print(f"note: policy '{p['name']}' is a BCQ model (constrained decoding): left out of the chat", flush=True)
            continue
        out.append((str(p["name"]), str(p["model"])))
    if not out:
        raise ConfigError(f"{path}: every policy is a BCQ model; nothing to chat with")
    return out


def main(argv: list[str] | None = None) -> int:
    from serving.chat import Decoding, open_chat

    ap = argparse.ArgumentParser(prog="python -m evaluation.chat", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--run", help="an evaluation run folder (runs/evaluation/<name>)")
    where.add_argument("--config", help="an evaluation recipe (configs/evaluation/*.yaml)")
    ap.add_argument("--port", type=int, default=7861)
    ap.add_argument("--max_new_tokens", type=int, default=256)
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    args = ap.parse_args(argv)
    try:
        specs = policies_of(args.run, args.config)
        title = f"chat — {Path(args.run).name if args.run else Path(args.config).stem}: " + " vs ".join(n for n, _ in specs)
        open_chat(specs, Decoding(args.max_new_tokens, args.temperature), port=args.port, title=title)
    except (ConfigError, ModelNotFoundError) as e:
        print(f"evaluation.chat: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
