"""Quantized and ONNX copies of a tiny model: each written whole or not at all, reloaded by the library,
close to the full model (KL per token by hand and on the copies), loaded by the evaluation stage as a
policy; ONNX agreeing with PyTorch for two batch sizes and two sequence lengths; bad input in one line."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch

from common.models import load_model_and_tokenizer
from serving.folders import ServingError, quantization_of, size_on_disk
from serving.onnx_export import check_onnx, export_onnx
from serving.quality import copy_vs_full, token_kl
from serving.quantize import quantize

from helpers.stages import REPO

CHATS = [[{"role": "user", "content": p}] for p in ("What is 12 plus 30?", "Hello! How can I help you today?",
                                                    "请问今天天气怎么样？")]


@pytest.fixture(scope="module")
def tiny64(tmp_path_factory):
    """A tiny Llama whose layer inputs are multiples of 64 (bitsandbytes' CPU 4-bit kernel needs them)."""
    from common.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny64", hidden_size=64)


@pytest.fixture(scope="module")
def copies(tiny64, tmp_path_factory):
    out = tmp_path_factory.mktemp("copies")
    return {kind: quantize(str(tiny64), out / kind, kind) for kind in ("int8", "nf4")}


def test_token_kl_by_hand():
    # one position, two tokens: q = (¾, ¼), p = (½, ½): KL = ¾ ln(3/2) + ¼ ln(1/2)
    q = torch.tensor([[[0.75, 0.25], [0.5, 0.5]]]).log()  # (1, 2, 2); the second position is masked out
    p = torch.tensor([[[0.5, 0.5], [0.9, 0.1]]]).log()
    total, n = token_kl(q, p, torch.tensor([[1.0, 0.0]]))
    assert n == 1 and total == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-6)
    assert token_kl(q, q, torch.ones(1, 2)) == (pytest.approx(0.0, abs=1e-7), 2)


def projection_weights(model) -> int:
    """Parameters of the decoder layers' Linear projections: what bitsandbytes quantizes."""
    return sum(m.weight.numel() for n, m in model.named_modules() if ".layers." in n and n.endswith("proj"))


@pytest.mark.parametrize("kind", ["int8", "nf4"])
def test_a_quantized_copy_reloads_smaller_and_close_to_the_full_model(kind, copies, tiny64, tmp_path):
    folder = copies[kind]
    assert quantization_of(folder) == kind and not (folder.parent / f"{kind}.tmp").exists()
    model, tokenizer = load_model_and_tokenizer(str(folder))  # as every stage loads a model spec
    assert type(model.model.layers[0].mlp.up_proj).__name__ == {"int8": "Linear8bitLt", "nf4": "Linear4bit"}[kind]
    full, _ = load_model_and_tokenizer(str(tiny64))
    # fp32 → 1 byte (int8) or ½ byte (nf4) per projection weight; the scales cost some of it back (on a tiny
    # model much: each layer also stores NF4's code books, 16 + 256 fp32 values)
    saved = projection_weights(full) * (4 - {"int8": 1, "nf4": 0.5}[kind])
    assert 0.85 * saved < size_on_disk(tiny64) - size_on_disk(folder) <= saved
    assert copy_vs_full(full, full, tokenizer, CHATS, max_new_tokens=8).mean_kl == pytest.approx(0.0, abs=1e-6)
    close = copy_vs_full(model.eval(), full.eval(), tokenizer, CHATS, max_new_tokens=8)
    from common.models.tiny import build_tiny_model

    other, _ = load_model_and_tokenizer(str(build_tiny_model(tmp_path / "other", hidden_size=64, seed=1)))
    far = copy_vs_full(other.eval(), full, tokenizer, CHATS, max_new_tokens=8)
    assert close.tokens > 0 and 0 < close.mean_kl < far.mean_kl / 10, (close.mean_kl, far.mean_kl)


@pytest.mark.slow
def test_the_evaluation_stage_compares_a_quantized_copy_with_its_full_model(copies, tiny64, tmp_path):
    from evaluation.__main__ import main

    main(["--config", str(REPO / "configs/evaluation/tiny.yaml"), "--output_root", str(tmp_path),
          "--policies", f"[{{name: full, model: {tiny64}}}, {{name: nf4, model: {copies['nf4']}}}]", "--baseline", "full",
          "--prompts", f"[{{path: {REPO / 'data/constraints/heldout.jsonl'}}}]", "--max_prompts", "4",
          "--decoding", "greedy", "--samples_per_prompt", "1"])
    report = json.loads((tmp_path / "tiny" / "eval.json").read_text())
    assert report["status"] == "complete"
    kl = report["policies"]["nf4"]["kl"]["mean"]  # its own replies, scored against the full model
    assert report["policies"]["full"]["kl"]["mean"] == 0.0 and kl != 0.0 and abs(kl) < 1.0
    assert "prompt_strict" in report["instructions"]["comparisons"]["nf4"]["all"]


def test_bad_input_is_one_line_and_writes_nothing(tiny64, copies, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ServingError, match="not one of int8, nf4"):
        quantize(str(tiny64), out, "int3")
    with pytest.raises(ServingError, match="already quantized"):
        quantize(str(copies["int8"]), out, "nf4")
    with pytest.raises(ServingError, match="cannot run nf4 on meta"):  # a device bitsandbytes has no kernel for
        quantize(str(tiny64), out, "nf4", device=torch.device("meta"))
    with pytest.raises(ServingError, match="exists"):
        quantize(str(tiny64), copies["int8"], "int8")
    classifier = tmp_path / "rm"
    classifier.mkdir()
    config = json.loads((tiny64 / "config.json").read_text())
    (classifier / "config.json").write_text(json.dumps({**config, "architectures": ["LlamaForSequenceClassification"]}))
    with pytest.raises(ServingError, match="not a causal language model"):
        export_onnx(str(classifier), out)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny64)}))
    with pytest.raises(ServingError, match="LoRA adapter"):
        quantize(str(adapter), out, "int8")
    with pytest.raises(ServingError, match="opset 14"):
        export_onnx(str(tiny64), out, opset=14)
    assert not out.exists() and not (tmp_path / "out.tmp").exists()
    proc = subprocess.run([sys.executable, "-m", "serving", "quantize", "--model", str(classifier), "--kind", "nf4",
                           "--out", str(out)], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "LlamaForSequenceClassification" in proc.stderr


def test_onnx_agrees_with_pytorch_for_two_batch_sizes_and_two_lengths(tiny64, tmp_path):
    import onnx

    folder = export_onnx(str(tiny64), tmp_path / "onnx")
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False).graph
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
    assert dims == [["batch", "sequence"], ["batch", "sequence"]]  # dynamic axes, named
    assert {"config.json", "tokenizer.json", "model.onnx"} <= {p.name for p in folder.iterdir()}
    agreement = check_onnx(folder, str(tiny64))
    assert {(a.batch, a.sequence) for a in agreement} == {(1, 8), (1, 33), (3, 8), (3, 33)}
    assert max(a.max_abs_diff for a in agreement) < 1e-4
    with pytest.raises(ServingError, match="differ"):  # the check can fail: another model's logits
        from common.models.tiny import build_tiny_model

        check_onnx(folder, str(build_tiny_model(tmp_path / "other", hidden_size=64, seed=1)))
