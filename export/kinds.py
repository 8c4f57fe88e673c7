"""Export kinds: the formats made from the merged Hugging Face folder, each with its own check.

The merged folder is always written and verified first (export/run.py); each kind named in the
recipe's `kinds` then builds its files from that folder and checks them against it:

    @register
    def _my_kind() -> ExportKind: ...      # or register(ExportKind(...)) in any module imported here

A kind is `build(folder, out_dir, stem) → [files]` (written under out_dir, named from stem) and
`check(file, reference) → figures` with a boolean "passed" (the export is refused for the Hub when a
check fails). `reference` (export.verify.Reference) holds the merged model's fp32 logits on the
verification sequences and its greedy reply, so every kind is compared with the same thing.
`needs` names a module the kind imports: missing, the export stops before writing anything, with
the install line.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from export.chain import ExportError
from export.gguf_file import LLAMA_CPP_TYPES, PY_TYPES, llama_cpp_quantize, write_gguf

GGUF_DIR = "gguf"
# mean next-token KL(export ‖ file) allowed per GGUF type, on the verification sequences: a bound on
# each type's rounding, looser for coarser types, not a measurement. What each type actually loses on
# the default model is measured by `make bench-export` (bench/export.py, docs/export.md).
GGUF_KL_TOLERANCE = {"f16": 1e-3, "bf16": 1e-3, "q8_0": 2e-2, "q4_K_M": 0.2, "q5_K_M": 0.1, "q6_K": 0.05}


@dataclass(frozen=True)
class ExportKind:
    name: str
    help: str
    build: Callable[[Path, Path, str], list[Path]]
    check: Callable[[Path, object], dict]
    needs: tuple[str, str] | None = None  # (module, how to install it)


KINDS: dict[str, ExportKind] = {}


def register(kind: ExportKind) -> ExportKind:
    KINDS[kind.name] = kind
    return kind


def check_kinds(names: list[str]) -> list[ExportKind]:
    """The recipe's kinds, refused before anything is written when unknown or not installable here."""
    kinds = []
    for name in names:
        if name not in KINDS:
            raise ExportError(f"kinds: unknown export kind '{name}' (known: {', '.join(KINDS)})")
        kind = KINDS[name]
        if kind.needs and importlib.util.find_spec(kind.needs[0]) is None:
            raise ExportError(f"kinds: {name} needs the Python module {kind.needs[0]}: {kind.needs[1]}")
        kinds.append(kind)
    return kinds


# ---------------------------------------------------------------------------------------------
# GGUF
# ---------------------------------------------------------------------------------------------


def gguf_check(path: Path, reference, file_type: str) -> dict:
    """Load the GGUF file with transformers' own GGUF reader (no project code in the way) and compare
    it with the merged model: the tokenizer it carries, log-probs and KL on the verification
    sequences, and the greedy reply to the first prompt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from export import verify

    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    load_s = time.perf_counter() - started
    texts = [reference.tokenizer.decode(s) for s in reference.sequences]  # chat markup and replies
    same_tokens = all(tokenizer(t)["input_ids"] == reference.tokenizer(t)["input_ids"] for t in texts)
    figures = verify.logprob_figures(reference.logits, verify.logits_of(model, reference.sequences), reference.sequences)
    reply = verify.sequences(model, tokenizer, reference.prompts[:1], reference.new_tokens)[0]
    tolerance = GGUF_KL_TOLERANCE[file_type]
    return {"reader": "transformers", "load_seconds": round(load_s, 2), "same_tokenization": same_tokens, **figures,
            "greedy_reply_equal": bool(torch.equal(reply, reference.reply)),
            "kl_tolerance": tolerance, "passed": bool(same_tokens and figures["mean_kl"] <= tolerance)}


def _gguf_kind(file_type: str) -> ExportKind:
    def build(folder: Path, out_dir: Path, stem: str) -> list[Path]:
        out = out_dir / GGUF_DIR / f"{stem}-{file_type}.gguf"
        out.parent.mkdir(parents=True, exist_ok=True)
        if file_type in PY_TYPES:
            return [write_gguf(folder, out, file_type, name=stem)]
        f16 = out.with_name(f"{stem}-f16.gguf")
        made_f16 = not f16.is_file()
        if made_f16:  # llama.cpp quantizes from a 16-bit file; kept only when gguf-f16 is asked for too
            write_gguf(folder, f16, "f16", name=stem)
        try:
            return [llama_cpp_quantize(f16, out, file_type)]
        finally:
            if made_f16:
                f16.unlink()

    needs = ("llama_cpp", "pip install -e '.[llama-cpp]' (llama-cpp-python; compiles llama.cpp on install)") \
        if file_type in LLAMA_CPP_TYPES else None
    how = "llama.cpp's quantizer" if needs else "the gguf package"
    return ExportKind(f"gguf-{file_type}", f"GGUF {file_type} for llama.cpp and Ollama ({how})", build,
                      lambda path, reference: gguf_check(path, reference, file_type), needs)


for _type in (*PY_TYPES, *LLAMA_CPP_TYPES):
    register(_gguf_kind(_type))
