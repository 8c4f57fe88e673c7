"""Model folders as the serving tools see them: which are causal LMs, which are quantized, how big
they are, and writing a new one so that no half-written folder ever carries the final name."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

from common.models import ADAPTER_CONFIG, ModelNotFoundError, is_gguf_file, resolve_model


class ServingError(ValueError):
    """Input the serving tools refuse; the message is one line naming the thing."""


def causal_lm_folder(spec: str) -> Path:
    """The full-weights causal-LM folder a model spec names, or one clear error.

    Refused: no such folder; a LoRA adapter (merge it first: the export stage writes a full folder);
    a model whose `architectures` is not a causal LM (a reward model's `…ForSequenceClassification`)."""
    try:
        folder = Path(resolve_model(spec))
    except ModelNotFoundError as e:
        raise ServingError(str(e)) from None
    if is_gguf_file(folder):
        raise ServingError(f"{spec} is a GGUF file, already an export (llama.cpp, Ollama); the serving tools "
                           "quantize and export a model folder (the export stage's merged folder)")
    if not folder.is_dir():
        raise ServingError(f"{spec}: a hub id; the serving tools take a local model folder")
    if (folder / ADAPTER_CONFIG).is_file() and not (folder / "config.json").is_file():
        raise ServingError(f"{folder} is a LoRA adapter, not full weights: merge it into a full folder first "
                           "(the export stage), then quantize or export that")
    config = read_config(folder)
    archs = config.get("architectures") or []
    if not archs or not all(a.endswith("ForCausalLM") for a in archs):
        raise ServingError(f"{folder}/config.json: architectures {archs or 'missing'} is not a causal language model "
                           "(…ForCausalLM); a reward model or classifier cannot be served as a chat model")
    return folder


def read_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ServingError(f"{folder}: no config.json — not a model folder") from None
    except json.JSONDecodeError as e:
        raise ServingError(f"{path} line {e.lineno}: not JSON ({e.msg})") from None


def quantization_of(folder: str | Path) -> str | None:
    """'int8', 'nf4'/'fp4' for a bitsandbytes folder, another method's name for other quantized folders,
    None for full precision."""
    q = read_config(Path(folder)).get("quantization_config")
    if not q:
        return None
    if q.get("quant_method") == "bitsandbytes":
        return "int8" if q.get("load_in_8bit") else q.get("bnb_4bit_quant_type", "fp4")
    return q.get("quant_method", "unknown")


def size_on_disk(folder: str | Path) -> int:
    """Bytes of every file under `folder` (weights, tokenizer, configs)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


@contextlib.contextmanager
def atomic_folder(out: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield `<out>.tmp` to write into; on success it becomes `out`, on any error it is removed.

    An existing `out` is refused unless `overwrite` (then replaced only once the new one is whole)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ServingError(f"{out} exists; choose another --out or pass --overwrite")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
