"""INT8 and 4-bit weight-only copies of a full causal-LM folder, through bitsandbytes.

Why bitsandbytes (checked on torch 2.13.0 CPU, transformers 5.23, December 2026): it is the one of
the three maintained libraries that quantizes, runs, saves and reloads both widths on a CPU *and* a
GPU, and it is what QLoRA trains on (`finetune: qlora`), so one library serves both.
- torchao 0.18.0: `Int8WeightOnlyConfig` works on the CPU, but every `Int4WeightOnlyConfig` packing
  needs a GPU kernel (`plain`: "Requires mslk >= 1.0.0"; `plain_int32`: "does not support device
  'cpu' yet"; `tile_packed_to_4d`: "Torch not compiled with CUDA enabled"), and its CPU 4-bit route
  (`IntxWeightOnlyConfig(int4)`) stores each 4-bit value in a byte: no smaller on disk than INT8.
- optimum-quanto 0.2.7 (last release 2025-03): quantizes on the CPU, but transformers refuses to
  save it ("The model is quantized with quanto and is not serializable").

The copies: `int8` is LLM.int8() (8-bit rows with absmax scales, outlier columns in fp16), `nf4` is
QLoRA's 4-bit NormalFloat with double quantization (blocks of 64 weights, their absmax scales
quantized again to 8 bits). Only the decoder layers' Linear projections are quantized; embeddings,
norms and the LM head stay as they were (transformers' choice for the output layer). The folder
reloads with `AutoModelForCausalLM.from_pretrained(folder)` (its config.json carries the
`quantization_config`), so every stage and the evaluation load it as a model spec.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from common.models.quantized import bnb_config, device_support
from serving.folders import ServingError, atomic_folder, causal_lm_folder, quantization_of

Bits = Literal["int8", "nf4"]
KINDS: tuple[str, ...] = ("int8", "nf4")


def default_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def compute_dtype_for(device: torch.device) -> torch.dtype:
    """bf16 matmuls where the device runs them fast (a GPU, an AMX CPU), fp32 elsewhere."""
    from common.models.precision import resolve_precision

    on_gpu = device.type == "cuda"
    fast = resolve_precision("auto") == "bf16" if not on_gpu else torch.cuda.is_bf16_supported()
    return torch.bfloat16 if fast else torch.float32


def quantize(model: str, out: str | Path, kind: Bits, *, device: torch.device | None = None,
             overwrite: bool = False) -> Path:
    """Write a `kind` (int8 | nf4) copy of the causal LM `model` (a spec or folder) to `out`, with its
    tokenizer; return `out`. Refused in one line, before anything is written: an unknown kind, a
    folder that is no full causal LM, one already quantized, a device bitsandbytes cannot run it on."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if kind not in KINDS:
        raise ServingError(f"quantization '{kind}' is not one of {', '.join(KINDS)}")
    source = causal_lm_folder(model)
    already = quantization_of(source)
    if already:
        raise ServingError(f"{source} is already quantized ({already}); quantize the full-precision folder")
    device = device or default_device()
    problem = device_support(kind, device)
    if problem:
        raise ServingError(problem)
    config = bnb_config(kind, compute_dtype_for(device))
    with atomic_folder(out, overwrite) as tmp:
        # device_map places the weights where bitsandbytes quantizes them as they load
        lm = AutoModelForCausalLM.from_pretrained(source, quantization_config=config, device_map=device.type
                                                  if device.type == "cpu" else {"": device.index or 0})
        lm.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
        del lm
        check_reload(tmp, kind, device)
    return Path(out)


@torch.no_grad()
def check_reload(folder: Path, kind: str, device: torch.device) -> None:
    """Reload the written folder as every stage will and run one inference pass; a failure is one line.

    Inference is where bitsandbytes' CPU kernels differ from training's: on a CPU with AVX512-BF16 a
    4-bit layer is repacked on its first no-grad pass, which needs in_features divisible by 64."""
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(folder, device_map=device.type if device.type == "cpu"
                                              else {"": device.index or 0}).eval()
    try:
        lm(input_ids=torch.tensor([[1, 2, 3, 4]], device=device))
    except Exception as e:  # noqa: BLE001 — the library's own words, in one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        hidden = lm.config.hidden_size
        hint = (f" (its CPU 4-bit kernel takes layer inputs in multiples of 64; hidden_size is {hidden})"
                if kind == "nf4" and device.type == "cpu" and hidden % 64 else "")
        raise ServingError(f"the {kind} copy does not run on {device.type} with bitsandbytes: {first}{hint}") from None
