"""Benchmark: one SFT training step of the default model in fp32 vs bf16 autocast.

Same model, same LoRA adapters, same batch, same process; prints seconds per step for each
and the ratio, plus a raw matmul rate, so `precision: auto` can be checked on a new machine.

    .venv/bin/python bench/precision.py [--steps 3] [--batch 8] [--seq 160]
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch


def matmul_tflops(dtype: torch.dtype, n: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def step_seconds(model, batch: torch.Tensor, bf16: bool, steps: int) -> float:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ctx = torch.autocast(device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step():
        with ctx:
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        model.zero_grad(set_to_none=True)

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=160)
    args = parser.parse_args()

    from peft import LoraConfig, get_peft_model

    from common.models import load_model_and_tokenizer
    from common.models.precision import resolve_precision

    model, tok = load_model_and_tokenizer(args.model)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.train()
    torch.manual_seed(0)
    batch = torch.randint(0, len(tok), (args.batch, args.seq))

    print(f"matmul 2048²: fp32 {matmul_tflops(torch.float32):.2f} TFLOP/s, bf16 {matmul_tflops(torch.bfloat16):.2f} TFLOP/s")
    fp32 = step_seconds(model, batch, bf16=False, steps=args.steps)
    bf16 = step_seconds(model, batch, bf16=True, steps=args.steps)
    print(f"LoRA train step, batch {args.batch}×{args.seq}: fp32 {fp32:.2f} s, bf16 autocast {bf16:.2f} s")
    print(f"bf16 speed-up: {fp32 / bf16:.2f}×   (precision: auto resolves to {resolve_precision('auto')} here)")


if __name__ == "__main__":
    main()
