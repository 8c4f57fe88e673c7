"""Experiment: offline BCQ on logs written by G itself, not by another model.

BCQ assumes the log comes from the behaviour policy G: then the tokens its constraint allows
(those G finds likely) are the tokens the log took, and Q has data for them. The default recipe
learns from HH responses (written by Anthropic's model); this script makes the log BCQ assumes
and runs the stage on it:

1. sample `--k` responses per prompt from G (the default SFT model) for `--prompts` HH prompts
   (the shared harmless pairs' dialogue contexts, ≤ 192 tokens, shuffled with `--seed`), at
   temperature 1, ≤ 48 new tokens → `runs/bcq_logs/g-samples.jsonl` (logged rows, reward 0);
2. `python -m bcq_offline --config configs/bcq_offline/own-logs.yaml`: the reward model scores
   every logged response (`reward_source: reward_model`), the rest as the default recipe.

    .venv/bin/python bench/bcq_own_logs.py [--prompts 320] [--k 4] [--seed 0]    # ≈ 22 min on 2 CPU cores

Needs runs/sft/default and runs/reward_model/default (`make sft rm`). Prints the evaluation.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LOG = REPO / "runs/bcq_logs/g-samples.jsonl"
HH = REPO.parent / "shared/data/hh-rlhf/harmless-base-1500.jsonl.gz"
G = REPO / "runs/sft/default/model"


def unique_prompts(tokenizer, seed: int) -> list:
    from bcq_offline.data import drop_long_records, read_logged

    records, _ = read_logged(str(HH), "preferences")
    seen, prompts = set(), []
    for r in drop_long_records(records, tokenizer, 192):
        key = json.dumps(r.prompt)
        if key not in seen:
            seen.add(key)
            prompts.append(r.prompt)
    random.Random(seed).shuffle(prompts)
    return prompts


def sample_log(n_prompts: int, k: int, seed: int, batch: int = 8, max_new_tokens: int = 48) -> None:
    import torch

    from common.models import load_model_and_tokenizer

    torch.manual_seed(seed)
    model, tok = load_model_and_tokenizer(str(G))
    model.eval()
    tok.padding_side = "left"
    prompts = unique_prompts(tok, seed)[:n_prompts]
    tmp = LOG.with_suffix(".tmp")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tmp.open("w") as f:
        for i in range(0, len(prompts), batch):
            chunk = prompts[i : i + batch]
            texts = [tok.apply_chat_template(p, add_generation_prompt=True, tokenize=False) for p in chunk]
            inputs = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                out = model.generate(**inputs, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                     max_new_tokens=max_new_tokens, num_return_sequences=k,
                                     pad_token_id=tok.pad_token_id)  # (len(chunk) × k, P + T), k rows per prompt
            p_len = inputs["input_ids"].shape[1]
            for j, row in enumerate(out):
                text = tok.decode(row[p_len:], skip_special_tokens=True).strip()
                f.write(json.dumps({"prompt": chunk[j // k], "response": text, "reward": 0.0}, ensure_ascii=False) + "\n")
            print(f"\rsampled {i + len(chunk)}/{len(prompts)} prompts ({time.perf_counter() - start:.0f} s)",
                  end="", flush=True)
    tmp.rename(LOG)
    print(f"\n{len(prompts) * k} logged responses in {LOG}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=320)
    parser.add_argument("--k", type=int, default=4, help="responses per prompt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run_name", default="own-logs")
    args = parser.parse_args()
    for need in (G, REPO / "runs/reward_model/default/model", HH):
        if not need.exists():
            raise SystemExit(f"{need} is missing (make sft rm; ../shared beside the checkout)")
    if LOG.exists():
        print(f"{LOG} exists: reusing it (delete it to sample again)")
    else:
        sample_log(args.prompts, args.k, args.seed)
    subprocess.run([sys.executable, "-m", "bcq_offline", "--config", "configs/bcq_offline/own-logs.yaml",
                    "--run_name", args.run_name, "--seed", str(args.seed)], cwd=REPO, check=True)


if __name__ == "__main__":
    main()
