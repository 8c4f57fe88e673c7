"""python -m serving {quantize,onnx,chat} — see each command's --help.

    python -m serving quantize --model runs/export/x --kind nf4 --out exports/x-nf4
    python -m serving onnx --model default --out exports/smollm2-onnx
    python -m serving chat --model default [--model exports/x-nf4] [--terminal]
"""

from __future__ import annotations

import argparse
import sys

from common.models import ModelNotFoundError
from serving.folders import ServingError


def _quantize(args) -> None:
    from serving.folders import size_on_disk
    from serving.quantize import quantize

    out = quantize(args.model, args.out, args.kind, overwrite=args.overwrite)
    print(f"{args.kind} copy of {args.model}: {out} ({size_on_disk(out) / 2**20:.1f} MiB)")


def _onnx(args) -> None:
    from serving.folders import size_on_disk
    from serving.onnx_export import check_onnx, export_onnx

    out = export_onnx(args.model, args.out, opset=args.opset, overwrite=args.overwrite)
    print(f"ONNX (opset {args.opset}) of {args.model}: {out} ({size_on_disk(out) / 2**20:.1f} MiB)")
    for a in check_onnx(out, args.model, tolerance=args.tolerance):
        print(f"  onnxruntime vs PyTorch, batch {a.batch}, sequence {a.sequence}: max |Δlogit| {a.max_abs_diff:.2e}")


def _chat(args) -> None:
    from serving.chat import Decoding, open_chat

    specs = [(spec if len(args.model) > 1 else "model", spec) for spec in args.model]
    open_chat(specs, Decoding(args.max_new_tokens, args.temperature), terminal=args.terminal, port=args.port)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m serving", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    q = sub.add_parser("quantize", help="an INT8 or 4-bit (NF4) weight-only copy through bitsandbytes")
    q.add_argument("--model", required=True, help="a full causal-LM folder or model spec (default, a merged export)")
    q.add_argument("--kind", choices=["int8", "nf4"], required=True)
    q.add_argument("--out", required=True, help="the folder to write (written as <out>.tmp, renamed when whole)")
    q.add_argument("--overwrite", action="store_true")
    o = sub.add_parser("onnx", help="an ONNX graph (dynamic batch and sequence), checked with onnxruntime")
    o.add_argument("--model", required=True)
    o.add_argument("--out", required=True)
    o.add_argument("--opset", type=int, default=18)
    o.add_argument("--tolerance", type=float, default=1e-3, help="max |logit difference| accepted")
    o.add_argument("--overwrite", action="store_true")
    c = sub.add_parser("chat", help="a streaming chat page (or --terminal) with one model or several side by side")
    c.add_argument("--model", action="append", required=True, help="model spec or folder; repeat for side by side")
    c.add_argument("--terminal", action="store_true", help="chat on the terminal (stdin) instead of the page")
    c.add_argument("--port", type=int, default=7861)
    c.add_argument("--max_new_tokens", type=int, default=256)
    c.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    args = ap.parse_args(argv)
    try:
        {"quantize": _quantize, "onnx": _onnx, "chat": _chat}[args.command](args)
    except (ServingError, ModelNotFoundError) as e:
        print(f"serving {args.command}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
