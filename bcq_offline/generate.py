"""python -m bcq_offline.generate --model runs/bcq/default/model --prompt "…" [--prompt …] [--tau 0.3]

Batch-constrained decoding from a saved BCQ model; one JSON line per prompt:
{"prompt", "response", "q_first", "kl_to_behaviour", "allowed_tokens"}.
`--policy behaviour` decodes with G instead, for comparison.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from bcq_offline.constraint import check_tau
from bcq_offline.decode import constrained_generate
from bcq_offline.saving import load_bcq
from common.stage import run_stage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bcq_offline.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a BCQ run's model/ folder")
    parser.add_argument("--prompt", action="append", required=True, help="a user message (repeatable)")
    parser.add_argument("--tau", type=float, default=None, help="batch constraint τ in (0, 1); default: the trained τ")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--sample", action="store_true", help="sample from softmax(Q/T) over allowed tokens")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--policy", choices=["bcq", "behaviour"], default="bcq")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model, tokenizer, meta = load_bcq(args.model)
    tau = meta["tau"] if args.tau is None else args.tau
    check_tau(tau)
    decoded = constrained_generate(
        model, tokenizer, [[{"role": "user", "content": p}] for p in args.prompt], tau, args.max_new_tokens,
        greedy=not args.sample, temperature=args.temperature, policy=args.policy,
        generator=torch.Generator().manual_seed(args.seed),
    )
    for prompt, d in zip(args.prompt, decoded):
        print(json.dumps({"prompt": prompt, "response": d.response, "q_first": d.q_first, "kl_to_behaviour": d.kl_to_g,
                          "allowed_tokens": sum(d.allowed) / max(1, len(d.allowed))}, ensure_ascii=False))


if __name__ == "__main__":
    sys.exit(run_stage(main))
