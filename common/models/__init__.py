"""One way to turn a model name or folder into a loaded model + tokenizer, for every stage.

A model spec is one of:
- `smollm2-135m-instruct` (alias `default`): the embedded default, converted by `make setup`
  into `$RLHFKIT_CACHE/models/smollm2-135m-instruct` (default cache: `<repo>/.cache`);
- `tiny-random`: a tiny random-init Llama built locally on first use (tests, smoke runs);
- a local folder: full weights, or a LoRA adapter whose `adapter_config.json` names its base
  (itself a spec, resolved the same way) — the adapter is merged unless asked otherwise;
- a local `.gguf` file (the export stage's `gguf-*` kinds, llama.cpp's format): model and tokenizer
  read by transformers' GGUF reader, every weight dequantized to fp32 into a plain model (then cast
  to the dtype asked for) — the format's rounding, not llama.cpp's kernels. It has no adapter;
- anything else is taken as a hub id (works only on a machine with internet).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

DEFAULT_MODEL = "smollm2-135m-instruct"
TINY_MODEL = "tiny-random"
ALIASES = {"default": DEFAULT_MODEL}
ADAPTER_CONFIG = "adapter_config.json"
GGUF_SUFFIX = ".gguf"
GGUF_MAGIC = b"GGUF"  # the first four bytes of every GGUF file


class ModelNotFoundError(FileNotFoundError):
    """A model spec that names nothing loadable; the message says how to make it."""


def cache_root() -> Path:
    """`$RLHFKIT_CACHE`, else `.cache/` in the source checkout, else `~/.cache/rlhfkit`."""
    env = os.environ.get("RLHFKIT_CACHE")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file():
        return repo / ".cache"
    return Path.home() / ".cache" / "rlhfkit"


def builtin_model_dir(name: str) -> Path:
    return cache_root() / "models" / name


def is_complete_model_dir(folder: Path) -> bool:
    """A model folder (full weights or an adapter); False for a file, a GGUF file included."""
    return (folder / "config.json").is_file() or (folder / ADAPTER_CONFIG).is_file()


def is_gguf_file(path: str | Path) -> bool:
    """A path `resolve_model` returned for a GGUF spec: an existing file named `*.gguf`."""
    path = Path(path)
    return path.suffix.lower() == GGUF_SUFFIX and path.is_file()


def _check_gguf(path: Path, spec: str) -> str:
    if not path.is_file():
        raise ModelNotFoundError(f"model '{spec}' not found: no such GGUF file "
                                 "(the export stage writes them: python -m export ... --kinds [gguf-q8_0])")
    with path.open("rb") as f:
        magic = f.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise ModelNotFoundError(f"{spec} is not a GGUF file (it does not begin with the bytes 'GGUF')")
    return str(path)


def resolve_model(spec: str) -> str:
    """A spec → a local folder or GGUF file path (as str) or a hub id. Builds `tiny-random` on demand."""
    spec = ALIASES.get(spec, spec)
    if spec == DEFAULT_MODEL:
        folder = builtin_model_dir(DEFAULT_MODEL)
        if not is_complete_model_dir(folder):
            raise ModelNotFoundError(
                f"the default model '{DEFAULT_MODEL}' is not installed at {folder}; "
                "run `make setup` (or `python -m tools.default_model`) to install it"
            )
        return str(folder)
    if spec == TINY_MODEL:
        from common.models.tiny import build_tiny_model

        folder = builtin_model_dir(TINY_MODEL)
        if not is_complete_model_dir(folder):
            build_tiny_model(folder)
        return str(folder)
    path = Path(spec).expanduser()
    if path.suffix.lower() == GGUF_SUFFIX and not path.is_dir():
        return _check_gguf(path, spec)
    if path.exists():
        if not path.is_dir() or not is_complete_model_dir(path):
            raise ModelNotFoundError(
                f"{spec} is not a model folder (no config.json or {ADAPTER_CONFIG}); "
                "a stage's output model lives in runs/<stage>/<name>/model"
            )
        return str(path)
    looks_local = spec.startswith((".", "/", "~")) or spec.count("/") > 1 or spec.startswith("runs")
    if looks_local or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ModelNotFoundError(
            f"model '{spec}' not found: no such folder"
            + (" (and HF_HUB_OFFLINE=1 rules out the hub)" if not looks_local else "")
            + f"; use '{DEFAULT_MODEL}', '{TINY_MODEL}', or the model folder of an earlier stage's run"
        )
    return spec


def save_model_folder(model, tokenizer, folder: str | Path) -> Path:
    """Save model + tokenizer to `folder` via a temporary sibling, so `folder` is never half-written."""
    import shutil

    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def adapter_base(folder: str) -> str | None:
    """The base-model spec a LoRA adapter folder was trained on, or None for full weights (and for a
    GGUF file, which is never an adapter)."""
    cfg = Path(folder) / ADAPTER_CONFIG
    if not cfg.is_file():
        return None
    return json.loads(cfg.read_text())["base_model_name_or_path"]


def load_tokenizer(spec: str):
    from transformers import AutoTokenizer

    folder = resolve_model(spec)
    if is_gguf_file(folder):
        tokenizer = AutoTokenizer.from_pretrained(Path(folder).parent, gguf_file=Path(folder).name)
    else:
        tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_and_tokenizer(
    spec: str,
    *,
    model_class: Any = None,
    dtype: torch.dtype = torch.float32,
    merge_adapter: bool = True,
    **model_kwargs: Any,
):
    """Load `spec` (see module doc) as `model_class` (default: a causal LM) + its tokenizer.

    A LoRA folder loads its base, then the adapter on top: merged into plain weights by
    default (what the next stage wants), or kept as a trainable `PeftModel`. A GGUF file loads
    dequantized (see `load_gguf_model`).
    """
    from transformers import AutoModelForCausalLM

    model_class = model_class or AutoModelForCausalLM
    folder = resolve_model(spec)
    tokenizer = load_tokenizer(folder)
    if is_gguf_file(folder):
        return load_gguf_model(folder, model_class, dtype, **model_kwargs), tokenizer
    base_spec = adapter_base(folder)
    if base_spec is None:
        model = model_class.from_pretrained(folder, dtype=dtype, **model_kwargs)
        return model, tokenizer
    from peft import PeftConfig, PeftModel

    base, _ = load_model_and_tokenizer(base_spec, model_class=model_class, dtype=dtype, **model_kwargs)
    peft_config = PeftConfig.from_pretrained(folder)
    if not hasattr(base, "prepare_inputs_for_generation"):
        # e.g. an SFT (causal-LM) adapter under a reward model's scalar head: the adapted
        # layers are the same, only the task wrapper (generation) does not apply
        peft_config.task_type = None
    model = PeftModel.from_pretrained(base, folder, config=peft_config, is_trainable=not merge_adapter)
    if merge_adapter:
        # merged weights are a plain model, trainable like one loaded from full weights (PEFT froze
        # the base while loading the adapter; a critic or a full fine-tune built on it needs them) —
        # unless quantized (QLoRA's base: merged into the 4-bit weights, which stay frozen)
        model = model.merge_and_unload()
        if not getattr(model, "is_quantized", False):
            model.requires_grad_(True)
    return model, tokenizer


def load_gguf_model(path: str, model_class: Any, dtype: torch.dtype, **model_kwargs: Any):
    """A GGUF file as a plain `model_class`: transformers' GGUF reader with every weight dequantized
    to fp32, then cast to `dtype`. Dequantizing is asked for explicitly: left to itself transformers
    marks a quantized file's model as quantized (it then neither trains nor saves) and, for the
    architectures it has GGUF kernels for, keeps the blocks packed."""
    from transformers import GgufConfig

    if "quantization_config" in model_kwargs:
        raise ValueError(f"{path}: a GGUF file loads dequantized and is not quantized again (QLoRA); "
                         "train on the export's merged folder instead")
    path = Path(path)
    model = model_class.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32,
                                        quantization_config=GgufConfig(dequantize=True), **model_kwargs)
    model.config.name_or_path = str(path)  # not the folder it lies in, which may hold another model
    return model if dtype == torch.float32 else model.to(dtype)
