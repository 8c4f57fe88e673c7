"""Benchmark: PPO's rollout decoding against its memory-bound floor, with the sampler in fp32 (the
trained model itself) and in bf16 (`rollout_precision: bf16`, a copy refreshed before each rollout).

The floor. At rollout batch sizes a CPU decoding step is bound by memory, not arithmetic: every
weight is read once per step (the batch shares it) and so is the KV cache so far. So no step can be
faster than (weight bytes + KV-cache bytes) / read bandwidth, and a rollout's decoding (every step
after the first token) no faster than the sum over its steps. The bandwidth is measured here, with
the same threads: the best of 5 sums over a 1 GiB fp32 tensor. The prompt pass (prefill and the
first token) is compute-bound: timed apart, as a 1-token rollout of the same prompts.

Three paths: the rollout as it was (fp32, every sample's prompt pass run on its own), with the
prompt pass shared by a prompt's samples (`shared_prefill`), and with the bf16 sampler as well.
Printed per path: the rollout's wall time, its prefill, decoding steps, decoding time, the floor
for fp32 weights (the issue's yardstick: the weights as trained) and for the sampler's own bytes,
the ratios, and for bf16 the mismatch to π_old (KL per token and the share of tokens whose weight
π_old/π_rollout exceeds the cap 2). Medians of `--repeats` rollouts of the default recipe's batch
(prompts_per_step × samples_per_prompt replies, max_new_tokens), paths alternating.

    .venv/bin/python bench/rollout_speed.py [--config configs/ppo/default.yaml] [--repeats 5] [--policy DIR]
        [--json FILE] [recipe overrides, e.g. --max_new_tokens 64]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# (label, rollout_precision, shared_prefill): the path before, each lever, both
VARIANTS = [("fp32, prompt pass per sample (before)", "same", "false"),
            ("fp32, shared prompt pass", "same", "true"),
            ("bf16 copy (+ refresh), shared prompt pass", "bf16", "true")]


def read_bandwidth(gib: float = 1.0, repeats: int = 5) -> float:
    """Bytes per second the cores read: the best of `repeats` sums over a `gib` GiB fp32 tensor."""
    import torch

    x = torch.ones(int(gib * 2**30 / 4))
    x.sum()  # touch every page first
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best


def weight_bytes(model) -> int:
    """Bytes of every distinct parameter (a tied embedding and LM head counted once)."""
    seen, total = set(), 0
    for p in model.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel() * p.element_size()
    return total


def kv_bytes_per_position(config, batch: int, element: int) -> int:
    """KV-cache bytes one position adds across the batch: keys and values of every layer."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return batch * config.num_hidden_layers * 2 * config.num_key_value_heads * head_dim * element


def floor_seconds(weights: int, kv_per_position: int, prompt_len: int, steps: int, bandwidth: float) -> float:
    """Σ over decoding steps s = 1 … steps of (weights + KV cache of prompt_len + s positions) / bandwidth."""
    kv = sum(kv_per_position * (prompt_len + s) for s in range(1, steps + 1))
    return (steps * weights + kv) / bandwidth


def main() -> None:
    import torch

    from common.config import parse_args
    from common.data.prompts import drop_long_prompts, load_prompts
    from common.models import load_model_and_tokenizer
    from common.rewards.mixer import load_domains
    from ppo.config import PPOStageConfig
    from ppo.losses import logprobs_of, rollout_correction_weights
    from ppo.trainer import PPOTrainer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/ppo/default.yaml")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--policy", default=None, help="default: the recipe's policy (the SFT run)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args, overrides = ap.parse_known_args()  # anything else: the recipe's fields (e.g. --lora.layers [1])

    base = ["--config", args.config, "--precision", "fp32", *overrides] + (["--policy", args.policy] if args.policy else [])
    cfg = parse_args(PPOStageConfig, base)
    torch.manual_seed(0)
    bandwidth = read_bandwidth()
    print(f"threads {torch.get_num_threads()}; read bandwidth {bandwidth / 1e9:.1f} GB/s (best sum over 1 GiB fp32)")
    domains = load_domains(cfg.domains_dir)
    zero_score = lambda prompts, texts, exp: torch.zeros(len(texts))  # noqa: E731 — rollouts only
    trainers = {}
    for name, precision, shared in VARIANTS:
        c = parse_args(PPOStageConfig, base + ["--rollout_precision", precision, "--shared_prefill", shared])
        policy, tokenizer = load_model_and_tokenizer(c.policy)
        trainers[name] = PPOTrainer(c, policy, tokenizer, None, zero_score)
    prompts = drop_long_prompts(load_prompts(cfg.prompts, set(domains), cfg.seed), tokenizer, cfg.max_prompt_tokens)
    batch = [p for p in prompts[: cfg.prompts_per_step] for _ in range(cfg.samples_per_prompt)]
    runs: dict[str, list[dict]] = {k: [] for k in trainers}
    for trainer in trainers.values():  # warm-up
        trainer.rollout(batch)
    for r in range(args.repeats):
        for name, trainer in trainers.items():
            sampler = trainer.rollout_policy or trainer.policy
            trainer.cfg.max_new_tokens = 1  # the prompt pass and the first token
            t = time.perf_counter()
            trainer.rollout(batch)
            prefill = time.perf_counter() - t
            trainer.cfg.max_new_tokens = cfg.max_new_tokens
            torch.manual_seed(100 + r)
            t = time.perf_counter()
            exp = trainer.rollout(batch)
            wall = time.perf_counter() - t
            steps = exp.responses.shape[1] - 1  # decoding steps after the first token
            own = weight_bytes(sampler)
            element = next(sampler.parameters()).element_size()
            fp32_bytes = own // element * 4  # the same parameters, 4 bytes each
            kv = kv_bytes_per_position(sampler.config, len(batch), element)
            row = {"wall_s": wall, "prefill_s": prefill, "steps": steps, "decode_s": wall - prefill,
                   "floor_fp32_s": floor_seconds(fp32_bytes, kv_bytes_per_position(sampler.config, len(batch), 4),
                                                 exp.prompt_len, steps, bandwidth),
                   "floor_own_s": floor_seconds(own, kv, exp.prompt_len, steps, bandwidth),
                   "tokens": int(exp.response_mask.sum())}
            if exp.rollout_logprobs is not None:
                with torch.no_grad():
                    trainer._prefixes(exp)  # the frozen layers' output, as the score phase computes it
                    logits, _ = trainer._actor(exp)
                old = logprobs_of(logits, exp.responses)
                _, stats = rollout_correction_weights(old, exp.rollout_logprobs, exp.response_mask, "token_truncate", 2.0)
                row |= {"mismatch_kl": stats["mismatch_kl"].item(), "capped": stats["capped"].item()}
            runs[name].append(row)

    print(f"\nbatch {len(batch)} replies × ≤ {cfg.max_new_tokens} tokens, medians of {args.repeats} rollouts\n")
    print("| sampler | weights | rollout | prefill + 1st token | decoding steps | decoding | floor (fp32 weights) | "
          "× floor (fp32) | floor (own bytes) | × floor (own) | mismatch KL/token | capped at 2 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    out = {"bandwidth_gbs": bandwidth / 1e9, "threads": torch.get_num_threads(), "runs": runs}
    for name, rows in runs.items():
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        sampler = trainers[name].rollout_policy or trainers[name].policy
        per_step = med["decode_s"] / max(med["steps"], 1)
        fp32_ratio, own_ratio = (med["decode_s"] / med[k] if med[k] else float("nan") for k in ("floor_fp32_s", "floor_own_s"))
        mismatch = (f"{med['mismatch_kl']:.1e} | {med['capped'] * 100:.2f}%" if "mismatch_kl" in med else "— | —")
        print(f"| {name} | {weight_bytes(sampler) / 2**20:.0f} MiB | {med['wall_s']:.2f} s | {med['prefill_s']:.2f} s | "
              f"{med['steps']:.0f} | {med['decode_s']:.2f} s ({per_step * 1e3:.0f} ms/step) | {med['floor_fp32_s']:.2f} s | "
              f"{fp32_ratio:.2f}× | {med['floor_own_s']:.2f} s | {own_ratio:.2f}× | {mismatch} |")
        out[name] = med
    before = out[VARIANTS[0][0]]
    for name, *_ in VARIANTS[1:]:
        print(f"{name} vs before: rollout ×{before['wall_s'] / out[name]['wall_s']:.2f}, prompt pass "
              f"×{before['prefill_s'] / out[name]['prefill_s']:.2f}, decoding ×{before['decode_s'] / out[name]['decode_s']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
