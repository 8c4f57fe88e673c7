"""The chain of adapters as one model: merged into full weights (what the export writes), or left
unmerged with every adapter active (what the export is checked against).

    model, tokenizer = merged_model("runs/ppo/default", "bf16")      # or a Chain
    write_hf_folder(model, tokenizer, "out.tmp", max_shard_size="2GB")

Merging happens in fp32 whatever the target dtype, then the weights are cast once: merging in bf16
would round each adapter's delta into the weights it is added to.

Unmerged, every adapter of the chain is loaded into one PEFT model on the base and all are active
at once. That is the same function as the chain: each adapter was trained on the merged model below
it, a LoRA layer adds x·(B·A)ᵀ·s to the frozen layer's output, so k adapters on one layer add k
such terms to the base layer's output — the merged weight W + Σ s·B·A, computed the other way round.
"""

from __future__ import annotations

from pathlib import Path

import torch

from export.chain import Chain, ExportError, resolve_chain

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def pick_device(device: str, dtype: str) -> torch.device:
    """`auto` → cuda when there is one, else cpu; refuses a device or a dtype this machine cannot run,
    by trying a small matmul in it (one line naming both)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise ExportError("device: cuda was asked for, but this machine has no CUDA device (use device: cpu or auto)")
    chosen = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else device.replace("auto", "cpu"))
    if chosen.type == "cuda" and dtype == "bf16" and not torch.cuda.is_bf16_supported():
        raise ExportError(f"dtype: bf16 cannot run on this GPU ({torch.cuda.get_device_name(chosen)}); use fp16 or fp32")
    try:
        x = torch.ones(4, 4, dtype=TORCH_DTYPES[dtype], device=chosen)
        (x @ x).sum().item()
    except (RuntimeError, TypeError) as err:
        raise ExportError(f"dtype: {dtype} cannot run on {chosen} ({str(err).splitlines()[0]})") from None
    return chosen


def _chain(chain_or_run: Chain | str) -> Chain:
    return chain_or_run if isinstance(chain_or_run, Chain) else resolve_chain(str(chain_or_run))


def load_full_weights(folder: str, device: torch.device | str = "cpu"):
    """The chain's base as an fp32 causal LM. A model converted from GGUF carries a GGUF
    `quantization_config` although its weights are dequantized: it is dropped, so the export is a
    plain model (any other quantization is refused: merge into its full-precision original)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    quant = getattr(model.config, "quantization_config", None)
    if quant is not None:
        method = quant.get("quant_method") if isinstance(quant, dict) else getattr(quant, "quant_method", None)
        if str(method).lower().endswith("gguf"):
            del model.config.quantization_config
            model.hf_quantizer = None
        else:
            raise ExportError(f"{folder}: the base is quantized ({method}); merge into its full-precision original")
    return model.to(device).eval()


def tokenizer_of(chain: Chain):
    """The tokenizer saved nearest the top of the chain (a stage saves it beside its adapter)."""
    from transformers import AutoTokenizer

    for link in reversed(chain.links):
        if any((Path(link.folder) / name).is_file() for name in TOKENIZER_FILES):
            return AutoTokenizer.from_pretrained(link.folder)
    return AutoTokenizer.from_pretrained(chain.base.folder)


def merged_model(chain_or_run: Chain | str, dtype: str = "fp32", device: torch.device | str = "cpu"):
    """(model, tokenizer): the chain's adapters merged into the base in fp32, bottom up, then cast
    to `dtype` (fp32 | bf16 | fp16)."""
    from peft import PeftModel

    chain = _chain(chain_or_run)
    model = load_full_weights(chain.base.folder, device)
    for link in chain.adapters:
        model = PeftModel.from_pretrained(model, link.folder).merge_and_unload()
    return model.to(TORCH_DTYPES[dtype]).eval(), tokenizer_of(chain)


def unmerged_model(chain_or_run: Chain | str, device: torch.device | str = "cpu"):
    """(model, tokenizer): the base in fp32 with every adapter of the chain loaded unmerged and active."""
    from peft import PeftModel

    chain = _chain(chain_or_run)
    model = load_full_weights(chain.base.folder, device)
    if chain.adapters:
        names = [f"link{i}" for i in range(len(chain.adapters))]
        model = PeftModel.from_pretrained(model, chain.adapters[0].folder, adapter_name=names[0])
        for name, link in zip(names[1:], chain.adapters[1:]):
            model.load_adapter(link.folder, adapter_name=name)
        model.base_model.set_adapter(names)
    return model.eval(), tokenizer_of(chain)


def write_hf_folder(model, tokenizer, folder: str | Path, max_shard_size: str = "2GB") -> list[Path]:
    """A standard Hugging Face folder: safetensors shards (+ index when several), config.json,
    generation_config.json, tokenizer files and the chat template. Returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, max_shard_size=max_shard_size)
    tokenizer.save_pretrained(folder)
    if not (folder / "generation_config.json").is_file():
        raise ExportError(f"{folder}: the base model has no generation config to ship")
    return sorted(p for p in folder.iterdir() if p.is_file())
