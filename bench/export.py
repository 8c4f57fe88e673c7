"""Benchmark: what each export kind costs and loses, on the default PPO policy when there is one
(runs/ppo/default, read only) and otherwise on the default model itself.

For each format: size on disk, load time, greedy decoding speed on this CPU (batch 1), and quality
against the full-precision merge — mean next-token KL(fp32 ‖ format) and the largest |Δ log p| on
held-out prompts (data/eval, two per domain) followed by the fp32 model's own greedy replies. The
Hugging Face folders run in their own dtype, as a user would run them. GGUF files are read by
transformers (which dequantizes them to fp32: their KL is the format's loss, their speed is not
llama.cpp's), and run in llama.cpp itself when llama-cpp-python is installed.

    .venv/bin/python bench/export.py [--run runs/ppo/default] [--new_tokens 32] [--out /tmp/bench-export]
                                     [--evaluate 50 --reward_model runs/reward_model/default/model]

--evaluate N runs the evaluation stage (bench/heldout_eval.py) on the first N held-out constraint prompts
with the fp32 folder as baseline and the bf16 folder and each GGUF file as policies: pass rates with
intervals, KL, and the reward model's win-rate against fp32. (fp16 is left out: on a CPU it runs as slowly
as it is close to fp32.)
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DOMAINS = ("general", "medical", "finance", "legal", "code")

from heldout_eval import evaluate_copies  # noqa: E402  (bench/, beside this file)


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def decode_rate(model, ids: torch.Tensor, new_tokens: int) -> float:
    model.generate(ids, max_new_tokens=4, do_sample=False, min_new_tokens=4)  # warm-up
    start = time.perf_counter()
    model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    return new_tokens / (time.perf_counter() - start)


def llama_cpp_rate(path: Path, ids: list[int], new_tokens: int) -> float:
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=512, verbose=False, n_threads=torch.get_num_threads())
    start, n = time.perf_counter(), 0
    for _ in llm.generate(ids, top_k=1, temp=0.0, reset=True):
        n += 1
        if n == new_tokens:
            break
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="default: runs/ppo/default if it has a model, else the default model")
    parser.add_argument("--new_tokens", type=int, default=32)
    parser.add_argument("--out", default=None, help="where the files go (default: a temporary folder, deleted)")
    parser.add_argument("--evaluate", type=int, default=0, metavar="N",
                        help="also run the evaluation stage on the first N held-out constraint prompts: the fp32 "
                        "folder as baseline, every other format a policy (GGUF files read as the stage reads them)")
    parser.add_argument("--reward_model", default=None, help="with --evaluate: the judge of the win-rate")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from export import verify
    from export.gguf_file import llama_cpp_quantize, write_gguf
    from export.merge import merged_model, write_hf_folder

    run = args.run or ("runs/ppo/default" if (REPO / "runs/ppo/default/model").is_dir() else "default")
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-export-"))
    prompts = [p for d in DOMAINS for p in verify.read_prompts(str(REPO / f"data/eval/{d}.jsonl"), 2)]
    print(f"model: {run}; {len(prompts)} held-out prompts + {args.new_tokens} greedy tokens each; "
          f"{torch.get_num_threads()} CPU threads; files in {out}")

    formats: dict[str, Path] = {}
    for dtype in ("fp32", "bf16", "fp16"):
        model, tok = merged_model(run, dtype)
        formats[f"hf-{dtype}"] = out / f"hf-{dtype}"
        write_hf_folder(model, tok, formats[f"hf-{dtype}"])
        del model
    for file_type in ("f16", "q8_0"):
        formats[f"gguf-{file_type}"] = write_gguf(out / "hf-fp32", out / f"model-{file_type}.gguf", file_type)
    has_llama_cpp = importlib.util.find_spec("llama_cpp") is not None
    if has_llama_cpp:
        formats["gguf-q4_K_M"] = llama_cpp_quantize(formats["gguf-f16"], out / "model-q4_K_M.gguf", "q4_K_M")

    ref_model = AutoModelForCausalLM.from_pretrained(out / "hf-fp32", dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(out / "hf-fp32")
    seqs = verify.sequences(ref_model, tok, prompts, args.new_tokens)
    ref_logits = verify.logits_of(ref_model, seqs)
    ids = seqs[0][: len(seqs[0]) - args.new_tokens][None]  # the first prompt alone

    rows = []
    for name, path in formats.items():
        started = time.perf_counter()
        if name.startswith("hf-"):
            dtype = {"hf-fp32": torch.float32, "hf-bf16": torch.bfloat16, "hf-fp16": torch.float16}[name]
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
        else:
            model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
        load = time.perf_counter() - started
        with torch.no_grad():
            figures = verify.logprob_figures(ref_logits, verify.logits_of(model, seqs), seqs)
            rate = decode_rate(model, ids, args.new_tokens)
        cpp = llama_cpp_rate(path, ids[0].tolist(), args.new_tokens) if has_llama_cpp and name.startswith("gguf") else None
        rows.append([name, f"{size(path) / 2**20:.1f}", f"{load:.2f}", f"{rate:.1f}", f"{cpp:.1f}" if cpp else "—",
                     f"{figures['mean_kl']:.2e}", f"{figures['max_abs']:.3f}"])
        del model

    head = ["format", "MiB", "load s", "tok/s (transformers)", "tok/s (llama.cpp)", "mean KL vs fp32", "max |Δ log p|"]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))
    if not has_llama_cpp:
        print("llama-cpp-python is not installed: no q4_K_M file, no llama.cpp speed (pip install -e '.[llama-cpp]')")
    if args.evaluate:
        specs = {name.replace("_", "-"): str(path) for name, path in formats.items() if name != "hf-fp16"}
        evaluate_copies(specs, "hf-fp32", args.evaluate, 64, args.reward_model, out, "export")
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
