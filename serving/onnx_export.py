"""An ONNX copy of a full causal-LM folder: `model.onnx` (input_ids, attention_mask → logits, dynamic
batch and sequence axes) beside the tokenizer and config, checked with onnxruntime against the model.

Why `torch.onnx.export(dynamo=True)` and not optimum's exporter: optimum's ONNX exporter now lives in
`optimum-onnx`, whose only release (0.1.0) requires `transformers<4.58` and `optimum~=2.1` — pip
would replace our pinned transformers 5.23 with 4.57. The dynamo exporter ships with torch and
translates the model's own forward (`torch.export`), so any architecture transformers runs exports.

The graph takes left- or right-padded batches: positions are counted over the attention mask, as
`generate` counts them. It has no KV-cache inputs: each call scores a whole sequence (decoding with
it re-reads the prefix; a serving runtime that needs a cache should export from optimum-onnx once it
supports transformers 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from serving.folders import ServingError, atomic_folder, causal_lm_folder, quantization_of

ONNX_FILE = "model.onnx"
MIN_OPSET = 18  # the dynamo exporter's lowest target
TOLERANCE = 1e-3  # max |logit difference| accepted on attended positions, fp32 (measured: ~1e-5 on SmolLM2-135M)


class LogitsOnly(torch.nn.Module):
    """(input_ids (B, S), attention_mask (B, S)) → logits (B, S, V), positions from the mask, no cache."""

    def __init__(self, lm: torch.nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # (B, S): real tokens counted from 0
        return self.lm(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                       use_cache=False).logits


def load_full(model: str):
    """The full-precision causal LM behind `model` (fp32, eval mode), its folder and tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = causal_lm_folder(model)
    kind = quantization_of(folder)
    if kind:
        raise ServingError(f"{folder} is quantized ({kind}); export the full-precision folder to ONNX")
    lm = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return lm, folder, AutoTokenizer.from_pretrained(folder)


def export_onnx(model: str, out: str | Path, *, opset: int = MIN_OPSET, overwrite: bool = False) -> Path:
    """Write `out/model.onnx` (+ tokenizer, config.json) for the causal LM `model`; return `out`.

    Refused in one line, nothing written: no full causal-LM folder, an opset below 18, an export the
    exporter cannot do (its first line of error)."""
    if opset < MIN_OPSET:
        raise ServingError(f"opset {opset}: the dynamo exporter targets opset {MIN_OPSET} or newer")
    lm, folder, tokenizer = load_full(model)
    example = torch.tensor([[1, 2, 3, 4, 5], [0, 0, 1, 2, 3]]), torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    batch, sequence = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("sequence", min=2, max=65536)
    axes = {0: batch, 1: sequence}
    with atomic_folder(out, overwrite) as tmp:
        try:
            program = torch.onnx.export(
                LogitsOnly(lm), example, dynamo=True, opset_version=opset, input_names=["input_ids", "attention_mask"],
                output_names=["logits"], dynamic_shapes={"input_ids": axes, "attention_mask": axes}, verbose=False)
            program.save(str(tmp / ONNX_FILE))
        except Exception as e:  # noqa: BLE001 — the exporter's many errors, said in one line
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ServingError(f"ONNX export of {folder} (opset {opset}) failed: {first}") from None
        lm.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return Path(out)


@dataclass
class Agreement:
    """onnxruntime against the model on one batch shape: the largest |logit difference| on attended positions."""

    batch: int
    sequence: int
    max_abs_diff: float


def check_onnx(folder: str | Path, model: str, shapes: tuple[tuple[int, int], ...] = ((1, 8), (1, 33), (3, 8), (3, 33)),
               tolerance: float = TOLERANCE, seed: int = 0) -> list[Agreement]:
    """Run `folder/model.onnx` in onnxruntime and `model` in PyTorch on random tokens of each (batch,
    sequence) shape — in batches above 1 the first row left-padded by a quarter — and raise when a
    logit differs by more than `tolerance` (padded positions, which no one reads, are not compared)."""
    import numpy as np
    import onnxruntime as ort

    lm, _, tokenizer = load_full(model)
    wrapped = LogitsOnly(lm)
    session = ort.InferenceSession(str(Path(folder) / ONNX_FILE), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(seed)
    out = []
    for b, s in shapes:
        ids = torch.randint(0, len(tokenizer), (b, s), generator=generator)
        mask = torch.ones_like(ids)
        if b > 1:
            mask[0, : s // 4] = 0
        with torch.no_grad():
            expected = wrapped(ids, mask).numpy()  # (b, s, V)
        got = session.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
        diff = float(np.abs(expected - got)[mask.numpy().astype(bool)].max())
        out.append(Agreement(b, s, diff))
        if not diff <= tolerance:
            raise ServingError(f"{folder}/{ONNX_FILE}: logits differ from the model's by {diff:.2e} > {tolerance:g} "
                               f"at batch {b}, sequence {s}")
    return out
