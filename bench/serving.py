"""Serving copies of a model against the model itself: size on disk, load time, decoding speed on this
machine, and quality — mean KL per token on each copy's own greedy replies, and the instruction-
following pass rate on held-out constraint prompts.

    .venv/bin/python bench/serving.py [--model default] [--prompts 50] [--max_new_tokens 64]
                                      [--evaluate [--reward_model runs/reward_model/default/model]]

Rows: the full model (fp32), its INT8 and NF4 copies (serving.quantize) and its ONNX graph
(serving.onnx_export, run by onnxruntime). The pass rate is IFEval's prompt-level strict rate: every
constraint of a prompt followed (data/constraints/heldout.jsonl, its first N rows), judged by
common.rewards.verifiers on the same greedy replies. ONNX decodes without a KV cache (the graph has
none: every step re-reads the sequence), on 4 prompts only; its logits are compared with the model's
instead of a KL, and its greedy replies are those of the full model wherever the argmax is unchanged.

--evaluate also runs the evaluation stage (`python -m evaluation`) on the same prompts with the full
model as baseline and the two copies as policies — the pass rates with their intervals, the KL, and
with --reward_model the win-rate against the full model with its interval — and prints its table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from heldout_eval import CONSTRAINTS, evaluate_copies  # noqa: E402  (bench/, beside this file)

from common.models import load_model_and_tokenizer, resolve_model  # noqa: E402
from common.models.generate import encode_prompts  # noqa: E402
from common.rewards.verifiers import constraint_results  # noqa: E402
from serving.folders import size_on_disk  # noqa: E402
from serving.onnx_export import ONNX_FILE, check_onnx, export_onnx  # noqa: E402
from serving.quality import greedy_replies, mean_token_kl  # noqa: E402
from serving.quantize import quantize  # noqa: E402


def constraint_rows(n: int) -> list[dict]:
    return [json.loads(line) for line in CONSTRAINTS.read_text().splitlines()[:n]]


def pass_rate(texts: list[str], rows: list[dict]) -> float:
    """Share of prompts whose every constraint the reply follows (strict)."""
    return sum(all(constraint_results(t, r["constraints"])) for t, r in zip(texts, rows)) / len(rows)


def timed_load(folder: str):
    start = time.perf_counter()
    model, tokenizer = load_model_and_tokenizer(folder)
    return model.eval(), tokenizer, time.perf_counter() - start


def onnx_greedy(session, prompt_ids: list[list[int]], pad_id: int, eos_id: int, max_new_tokens: int) -> int:
    """Greedy decoding through the ONNX graph (no cache: the whole sequence each step); tokens made."""
    import numpy as np

    made = 0
    for prompt in prompt_ids:  # one at a time: no padding to track
        ids = np.array([prompt], dtype=np.int64)
        for _ in range(max_new_tokens):
            logits = session.run(["logits"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
            token = int(logits[0, -1].argmax())
            ids = np.concatenate([ids, [[token]]], axis=1)
            made += 1
            if token == eos_id:
                break
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--prompts", type=int, default=50)
    ap.add_argument("--max_new_tokens", type=int, default=64)
    ap.add_argument("--batch_size", type=int, default=16)
    ap.add_argument("--evaluate", action="store_true", help="also run the evaluation stage on the copies")
    ap.add_argument("--reward_model", default=None, help="with --evaluate: the judge of the win-rate")
    ap.add_argument("--work", default=None, help="where the copies go (default: a temporary folder)")
    args = ap.parse_args()
    torch.manual_seed(0)
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-serving-"))
    rows = constraint_rows(args.prompts)
    chats = [[{"role": "user", "content": r["prompt"]}] for r in rows]

    timed_load(args.model)  # imports and the page cache warmed, so every load below is timed alike
    full, tokenizer, full_load = timed_load(args.model)
    full_dir = resolve_model(args.model)
    prompt_ids = encode_prompts(tokenizer, chats)
    folders = {"full": full_dir}
    for kind in ("int8", "nf4"):
        start = time.perf_counter()
        folders[kind] = str(quantize(args.model, work / kind, kind, overwrite=True))
        print(f"{kind} copy written in {time.perf_counter() - start:.0f} s", flush=True)

    table = []
    for name, folder in folders.items():
        model, _, load = (full, tokenizer, full_load) if name == "full" else timed_load(folder)
        start = time.perf_counter()
        replies = greedy_replies(model, tokenizer, prompt_ids, args.max_new_tokens, args.batch_size)
        seconds = time.perf_counter() - start
        made = sum(len(r.tokens) for r in replies)
        kl = 0.0 if name == "full" else mean_token_kl(model, full, tokenizer.pad_token_id, prompt_ids, replies,
                                                      args.batch_size)[0]
        table.append((name, size_on_disk(folder), load, made / seconds, f"{kl:.4f}",
                      f"{100 * pass_rate([r.text for r in replies], rows):.0f}%"))
        print(f"{name}: {made} tokens in {seconds:.0f} s", flush=True)

    import onnxruntime as ort

    start = time.perf_counter()
    onnx_dir = export_onnx(args.model, work / "onnx", overwrite=True)
    agreement = check_onnx(onnx_dir, args.model)
    print(f"ONNX written and checked in {time.perf_counter() - start:.0f} s: " + ", ".join(
        f"b{a.batch}×s{a.sequence} {a.max_abs_diff:.1e}" for a in agreement), flush=True)
    start = time.perf_counter()
    session = ort.InferenceSession(str(onnx_dir / ONNX_FILE), providers=["CPUExecutionProvider"])
    load = time.perf_counter() - start
    start = time.perf_counter()
    made = onnx_greedy(session, prompt_ids[:4], tokenizer.pad_token_id, tokenizer.eos_token_id, args.max_new_tokens)
    table.append(("onnx", size_on_disk(onnx_dir), load, made / (time.perf_counter() - start),
                  f"max|Δlogit| {max(a.max_abs_diff for a in agreement):.1e}", "= full"))

    print(f"\n{args.model}: {args.prompts} held-out constraint prompts, greedy, ≤ {args.max_new_tokens} new tokens, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'copy':<6}{'size (MiB)':>11}{'load (s)':>10}{'tokens/s':>10}  {'KL/token vs full':<24}{'pass rate':>10}")
    for name, size, load, speed, kl, rate in table:
        print(f"{name:<6}{size / 2**20:>11.1f}{load:>10.1f}{speed:>10.1f}  {kl:<24}{rate:>10}")
    if args.evaluate:
        evaluate_copies(folders, "full", args.prompts, args.max_new_tokens, args.reward_model, work, "serving")


if __name__ == "__main__":
    main()
