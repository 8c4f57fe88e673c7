"""bitsandbytes quantization, for two uses: QLoRA training (`finetune: qlora` — a frozen base in 4-bit
NF4 with LoRA adapters, as in the QLoRA paper and as TRL and LLaMA-Factory load it) and the
serving package's INT8 / NF4 copies.

QLoRA here: `BitsAndBytesConfig(load_in_4bit, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant)`
quantizes every decoder Linear as the weights load (embeddings, norms, the LM head and a reward
model's `score` head stay in full precision); a LoRA adapter named as the model is merged into
the 4-bit weights (PEFT dequantizes, adds, quantizes again); then PEFT's
`prepare_model_for_kbit_training` freezes the base and keeps the norms in fp32, and the stage adds
its adapters as for `finetune: lora`. The saved result is the adapter alone: every later stage
applies it to the base in full precision.
"""

from __future__ import annotations

from typing import Any

import torch

from common.config import ConfigError

QLORA = "qlora"
# A reward model's or critic's scalar head is trained whole (LoRA's modules_to_save): never quantized.
KEEP_FULL = ["lm_head", "score"]


def bnb_config(kind: str, compute_dtype: torch.dtype = torch.float32):
    """transformers' `BitsAndBytesConfig`: `int8` (LLM.int8()) or `nf4` (NF4 with double quantization)."""
    from transformers import BitsAndBytesConfig

    if kind == "int8":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=KEEP_FULL)
    if kind == "nf4":
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                  bnb_4bit_compute_dtype=compute_dtype, llm_int8_skip_modules=KEEP_FULL)
    raise ValueError(f"quantization '{kind}' is not one of int8, nf4")


def device_support(kind: str, device: torch.device, train: bool = False) -> str | None:
    """None when bitsandbytes runs `kind` on `device` (and, with `train`, backpropagates through it);
    else one line with the library's own error. A real probe on a 64×64 layer."""
    try:
        import bitsandbytes as bnb
    except ImportError as e:
        return f"bitsandbytes is not installed ({e}): pip install -e '.[serving]'"
    try:
        weight = torch.nn.Linear(64, 64, bias=False).weight.data
        if kind == "int8":
            layer = bnb.nn.Linear8bitLt(64, 64, bias=False, has_fp16_weights=False)
            layer.weight = bnb.nn.Int8Params(weight, requires_grad=False)
        else:
            layer = bnb.nn.Linear4bit(64, 64, bias=False, quant_type="nf4", compress_statistics=True,
                                      compute_dtype=torch.float32)
            layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4", compress_statistics=True)
        layer = layer.to(device)
        x = torch.randn(2, 64, device=device, requires_grad=train)
        y = layer(x)
        if train:
            y.sum().backward()
            if x.grad is None:
                return f"bitsandbytes {bnb.__version__} gives no gradient through a {kind} layer on {device.type}"
    except Exception as e:  # noqa: BLE001 — whatever the library raises, in one line
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        return f"bitsandbytes {getattr(bnb, '__version__', '?')} cannot run {kind} on {device.type}: {first}"
    return None


def check_qlora(deepspeed: str | None, device: torch.device) -> None:
    """Refuse `finetune: qlora` in one line where it cannot train: no bitsandbytes 4-bit kernels with
    gradients on this device, or a ZeRO-3 config (DeepSpeed would partition the packed 4-bit weights
    without their quantization state; ZeRO-2 and one device are fine)."""
    from common.planning.formulas import setup_from

    problem = device_support("nf4", device, train=True)
    if problem:
        raise ConfigError(f"finetune: qlora needs bitsandbytes' 4-bit kernels with gradients on {device.type}; "
                          f"this machine has: {problem}")
    if deepspeed and setup_from(deepspeed, "fp32", 1, None).zero == 3:
        raise ConfigError(f"finetune: qlora cannot run under ZeRO-3 ({deepspeed}): the 4-bit weights are not "
                          "partitioned; use --deepspeed configs/deepspeed/zero2.json or one process")


def qlora_load_kwargs(device: torch.device, precision: str) -> dict[str, Any]:
    """`from_pretrained` keywords that load the frozen base in NF4 on `device`, computing in bf16 where
    the recipe's precision resolves to it, fp32 otherwise."""
    from common.models.precision import resolve_precision

    compute = torch.bfloat16 if resolve_precision(precision) == "bf16" else torch.float32
    return {"quantization_config": bnb_config("nf4", compute),
            "device_map": {"": device.index or 0} if device.type == "cuda" else "cpu"}


def prepare_for_qlora(model):
    """PEFT's `prepare_model_for_kbit_training` (base frozen, norms and embeddings fp32), and
    bitsandbytes' CPU inference repacking off. Gradient checkpointing stays the stage's to turn on
    (the Trainer's argument, PPO's trainer), as for lora.

    Why the last: on a CPU with AVX512-BF16, bitsandbytes 0.50 repacks a 4-bit layer's weight for
    its inference kernel on the first no-grad pass in eval mode (a PPO rollout, an evaluation step)
    and keeps it so; every later training pass then runs that kernel, which has no backward — no
    gradient reaches any adapter, silently (measured on a tiny model: every LoRA grad None)."""
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model


def load_qlora_model(spec: str, precision: str, model_class: Any = None, **kwargs: Any):
    """`spec` with its decoder Linears in NF4 (an adapter spec merged into them), prepared for QLoRA
    training on this process's device; and its tokenizer."""
    from common import distributed
    from common.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(spec, model_class=model_class,
                                                **qlora_load_kwargs(distributed.device(), precision), **kwargs)
    return prepare_for_qlora(model), tokenizer
