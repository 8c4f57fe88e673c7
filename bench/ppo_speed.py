"""Benchmark: our PPO step against TRL 1.9.2's `trl.experimental.ppo`, same settings, same run.

Both train the embedded default model (SmolLM2-135M-Instruct) on the shipped prompts with the
same reward/value model, response length, batch size, PPO epochs, mini-batch size, LoRA shape
and frozen critic layers (the default recipe's shapes; `--finetune full` trains all weights in
both). TRL runs in its own venv (`.cache/bench/venv-trl-1.9.2`, made on first use: TRL 1.9.2 is
the last release with PPO). Each side runs in a fresh process: one warm-up step, then `--steps`
timed steps. Printed: episodes/s, response tokens/s (up to and including EOS), peak resident
memory (and peak GPU memory on a GPU), the warm-up step's time (it holds any compiling), the
ratios; then our time split (generate / score / train) and one PPO step against the sum of its
necessary model passes timed alone on the same batch. On a GPU both sides run there.

    .venv/bin/python bench/ppo_speed.py [--steps 4] [--finetune lora|full] [--precision fp32|bf16]
        [--model DIR] [--peer_python PATH] [--compile_generation auto|true|false]

`--model` swaps the embedded default model for another folder with the same files (e.g. a
random-init model of the same architecture where the default model is not installed);
`--peer_python` names an interpreter that already has TRL 1.9.2 (no venv is made then).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
PEER_VENV = REPO / ".cache/bench/venv-trl-1.9.2"
BENCH_RM = REPO / ".cache/bench/reward_model"


def settings(args) -> dict:
    from tools.default_model import ensure_default_model

    prompts = []
    for path in sorted((REPO / "data/prompts").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            prompts.append((row["prompt"] if isinstance(row["prompt"], str) else row["prompt"][-1]["content"], row["domain"]))
    return {
        "policy": args.model or str(ensure_default_model()), "reward_model": str(BENCH_RM),
        "prompts": [p for p, _ in prompts], "domains": [d for _, d in prompts],
        "steps": args.steps, "batch": args.batch, "mini_batch": args.batch, "ppo_epochs": args.epochs,
        "max_new_tokens": args.max_new_tokens, "temperature": 1.0, "policy_lr": 1e-4, "kl_coef": 0.1,
        "missing_eos_penalty": 1.0, "finetune": args.finetune, "lora_rank": 16, "lora_alpha": 32,
        "lora_layers": list(range(20, 30)), "critic_freeze_layers": 20 if args.finetune == "lora" else 0,
        "precision": args.precision, "seed": 0, "threads": os.cpu_count(),
        "compile_generation": {"auto": "null"}.get(args.compile_generation, args.compile_generation),
    }


def ensure_reward_model(policy: str) -> None:
    """A reward/value model both sides load: the policy model with a seeded scalar head."""
    made_from = BENCH_RM / "made_from.txt"
    if made_from.is_file() and made_from.read_text() == policy:
        return
    shutil.rmtree(BENCH_RM, ignore_errors=True)
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(policy, num_labels=1)
    tok = AutoTokenizer.from_pretrained(policy)
    model.config.pad_token_id = tok.pad_token_id
    tmp = BENCH_RM.with_name("reward_model.tmp")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "reward_config.json").write_text(json.dumps({"max_length": 512, "reward_mean": 0.0, "reward_std": 1.0}))
    (tmp / "made_from.txt").write_text(policy)
    tmp.rename(BENCH_RM)


def ensure_peer_venv(given: str | None) -> Path:
    if given:
        return Path(given)
    python = PEER_VENV / "bin/python"
    if not (PEER_VENV / ".installed").is_file():
        print(f"making the TRL 1.9.2 venv in {PEER_VENV} (once)…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0", "trl==1.9.2", "peft"], check=True)
        (PEER_VENV / ".installed").touch()
    return python


# ---------------------------------------------------------------------------------- our side


def our_worker(s: dict) -> dict:
    import torch

    from common.config import parse_args
    from common.data.prompts import Prompt
    from common.models import load_model_and_tokenizer
    from common.rewards.mixer import RewardMixer, load_domains
    from common.rewards.scorer import load_reward_scorer
    from common.training.engines import inference_module
    from ppo.config import PPOStageConfig
    from ppo.losses import logprobs_of
    from ppo.models import build_critic
    from ppo.scoring import MixedReward
    from ppo.trainer import PPOTrainer

    torch.manual_seed(s["seed"])
    torch.set_num_threads(s["threads"])
    cfg = parse_args(PPOStageConfig, [
        "--policy", s["policy"], "--reward_model", s["reward_model"], "--finetune", s["finetune"],
        "--lora.rank", str(s["lora_rank"]), "--lora.alpha", str(s["lora_alpha"]), "--lora.layers", json.dumps(s["lora_layers"]),
        "--critic_freeze_layers", str(s["critic_freeze_layers"]), "--prompts_per_step", str(s["batch"]),
        "--samples_per_prompt", "1", "--mini_batch_size", str(s["mini_batch"]), "--ppo_epochs", str(s["ppo_epochs"]),
        "--max_new_tokens", str(s["max_new_tokens"]), "--temperature", str(s["temperature"]),
        "--policy_lr", str(s["policy_lr"]), "--kl_coef", str(s["kl_coef"]),
        "--missing_eos_penalty", str(s["missing_eos_penalty"]), "--precision", s["precision"],
        "--compile_generation", s["compile_generation"],
    ])
    policy, tok = load_model_and_tokenizer(cfg.policy)
    scorer = load_reward_scorer(cfg.reward_model)
    scorer.model = inference_module(scorer.model, None)  # on this process's device
    critic = build_critic(cfg.reward_model, zero_head=False, freeze_layers=cfg.critic_freeze_layers)
    trainer = PPOTrainer(cfg, policy, tok, critic, MixedReward(RewardMixer(load_domains(REPO / "configs/domains")), scorer))
    prompts = [Prompt([{"role": "user", "content": p}], d, None, "bench") for p, d in zip(s["prompts"], s["domains"])]
    batches = [[prompts[(i * s["batch"] + j) % len(prompts)] for j in range(s["batch"])] for i in range(s["steps"] + 1)]

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    warm = time.perf_counter()
    trainer.step(batches[0])  # warm-up (and compiling, if any)
    sync()
    warm = time.perf_counter() - warm
    start, tokens, split = time.perf_counter(), 0, {"generate": 0.0, "score": 0.0, "train": 0.0}
    for batch in batches[1:]:
        stats = trainer.step(batch)
        tokens += stats["response_length"] * len(batch)
        for k in split:
            split[k] += stats[f"time/{k}"]
    sync()
    seconds = time.perf_counter() - start
    result = {"steps": s["steps"], "episodes": s["steps"] * s["batch"], "response_tokens": tokens, "seconds": seconds,
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "split": split,
              "warmup_seconds": warm, "compiled_generation": bool(trainer.generate_kwargs),
              "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
              "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None}

    # one step on a fixed batch vs its necessary model passes, each timed alone on that batch
    batch = batches[1]
    t0 = time.perf_counter()
    exp = trainer.rollout(batch)
    t1 = time.perf_counter()
    trainer.score(exp, batch)
    trainer.advantages(exp)
    trainer.update(exp)
    sync()
    step_seconds = time.perf_counter() - t0
    passes = {"generate": t1 - t0}
    texts = [tok.decode(r[m.bool()], skip_special_tokens=True) for r, m in zip(exp.responses, exp.response_mask)]
    mask = exp.response_mask

    def timed(name, fn):
        sync()
        t = time.perf_counter()
        fn()
        sync()
        passes[name] = passes.get(name, 0.0) + time.perf_counter() - t

    # the model passes a step needs, each alone (the frozen-prefix passes are part of them)
    exp.policy_prefix = exp.critic_prefix = None
    with torch.no_grad():
        timed("frozen prefixes (policy, critic)", lambda: trainer._prefixes(exp))
        timed("policy forward", lambda: trainer._actor(exp))
        if cfg.finetune == "lora":
            with trainer.policy.disable_adapter():
                timed("reference forward", lambda: trainer._actor(exp))
        else:
            timed("reference forward", lambda: trainer.ref_policy(**trainer._inputs(exp, slice(None))))
        timed("critic forward", lambda: trainer._critic(exp))
        timed("reward-model forward", lambda: scorer([p.messages for p in batch], texts))
    for _ in range(cfg.ppo_epochs * (s["batch"] // s["mini_batch"])):
        def policy_update():
            loss = -(logprobs_of(trainer._actor(exp)[0], exp.responses) * mask).mean()
            trainer.actor.optimizer.zero_grad()
            loss.backward()
            trainer.actor.optimizer.step()

        def critic_update():
            loss = ((trainer._critic(exp) - exp.returns) ** 2 * mask).mean()
            trainer.critic.optimizer.zero_grad()
            loss.backward()
            trainer.critic.optimizer.step()

        timed("policy forward+backward+step", policy_update)
        timed("critic forward+backward+step", critic_update)
    result["one_step"] = step_seconds
    result["passes"] = passes
    return result


# ---------------------------------------------------------------------------------- driver


def run_side(python: Path, script: list[str], s: dict) -> dict:
    proc = subprocess.run([str(python), *script, json.dumps(s)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled"})
    if proc.returncode != 0:
        raise SystemExit(f"{script[0]} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per side (after one warm-up)")
    parser.add_argument("--batch", type=int, default=8, help="episodes (prompt + response) per step")
    parser.add_argument("--epochs", type=int, default=2, help="PPO epochs per batch")
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--finetune", choices=["lora", "full"], default="lora")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--model", help="policy model folder (default: the embedded default model)")
    parser.add_argument("--peer_python", help="an interpreter with TRL 1.9.2 (default: the benchmark's own venv)")
    parser.add_argument("--compile_generation", choices=["auto", "true", "false"], default="auto",
                        help="our side's compile_generation (auto: on for CUDA)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(our_worker(json.loads(args.worker))))
        return

    s = settings(args)
    ensure_reward_model(s["policy"])
    peer = ensure_peer_venv(args.peer_python)
    print(f"settings: {args.batch} episodes/step, {args.max_new_tokens} new tokens, {args.epochs} PPO epochs, "
          f"{args.finetune}, {args.precision}, {args.steps} timed steps, {s['threads']} threads", flush=True)
    ours = run_side(Path(sys.executable), [__file__, "--worker"], s)
    theirs = run_side(peer, ["bench/peers/trl_ppo.py"], s)

    def rates(r):
        return r["episodes"] / r["seconds"], r["response_tokens"] / r["seconds"], r["peak_rss_mb"]

    (oe, ot, om), (te, tt, tm) = rates(ours), rates(theirs)
    gpu = ours.get("peak_gpu_mb") is not None
    og, tg = (ours["peak_gpu_mb"], theirs["peak_gpu_mb"]) if gpu else (1.0, 1.0)
    head = f"{'peak GPU MB':>13}" if gpu else ""
    print(f"\n{'':24}{'episodes/s':>12}{'resp tok/s':>12}{'peak RSS MB':>13}{head}{'warm-up s':>11}")
    print(f"{'rlhfkit ppo':24}{oe:12.3f}{ot:12.1f}{om:13.0f}" + (f"{og:13.0f}" if gpu else "")
          + f"{ours['warmup_seconds']:11.1f}")
    print(f"{'TRL 1.9.2 experimental':24}{te:12.3f}{tt:12.1f}{tm:13.0f}" + (f"{tg:13.0f}" if gpu else "")
          + f"{theirs['warmup_seconds']:11.1f}")
    print(f"{'ratio (ours / TRL)':24}{oe / te:12.2f}{ot / tt:12.2f}{om / tm:13.2f}" + (f"{og / tg:13.2f}" if gpu else ""))
    print(f"device: {ours['device']}; our generation compiled: {ours['compiled_generation']}")
    total = sum(ours["split"].values())
    print("\nour time split: " + ", ".join(f"{k} {v / total:.0%}" for k, v in ours["split"].items()))
    passes = sum(ours["passes"].values())
    print("one PPO step on a fixed batch vs its model passes timed alone:")
    for name, sec in ours["passes"].items():
        print(f"  {name:34}{sec:8.2f} s")
    print(f"  {'sum of passes':34}{passes:8.2f} s\n  {'one step':34}{ours['one_step']:8.2f} s"
          f"   → {ours['one_step'] / passes:.2f}× the sum (target ≤ 1.25×)")


if __name__ == "__main__":
    main()
