"""A GGUF file (as the export stage writes it) is a model spec: it loads dequantized as the folder it
was written from, the evaluation stage measures it against that folder, and a bad one is one line."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from common.models import (
    ModelNotFoundError,
    adapter_base,
    load_model_and_tokenizer,
    load_tokenizer,
    resolve_model,
    save_model_folder,
)
from evaluation.__main__ import main
from evaluation.policies import same_vocabulary
from export.gguf_file import write_gguf

from helpers.stages import REPO

TINY = str(REPO / "configs/evaluation/tiny.yaml")


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    """(merged folder, {file type: GGUF file}): the tiny model as an fp16 export and its f16 and q8_0
    files, written by the export stage's writer; fp16 weights make the f16 file lossless."""
    root = tmp_path_factory.mktemp("export")
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir), dtype=torch.float16)
    folder = save_model_folder(model, tokenizer, root / "merged")
    (root / "gguf").mkdir()
    return folder, {t: write_gguf(folder, root / "gguf" / f"tiny-{t}.gguf", t) for t in ("f16", "q8_0")}


def test_a_gguf_file_loads_as_the_folder_it_was_written_from(exported):
    folder, files = exported
    f16 = str(files["f16"])
    assert resolve_model(f16) == f16 and adapter_base(f16) is None
    model, tok = load_model_and_tokenizer(f16)
    ref, ref_tok = load_model_and_tokenizer(str(folder))
    # a plain fp32 model, as trainable and savable as one loaded from a folder: no GGUF quantizer left on it
    assert model.dtype == torch.float32 and not getattr(model, "is_quantized", False)
    assert not hasattr(model.config, "quantization_config") and model.config.name_or_path == f16
    assert tok.get_vocab() == ref_tok.get_vocab() and tok.pad_token == ref_tok.pad_token
    chat = [{"role": "user", "content": "Name a colour."}]
    ids = ref_tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)["input_ids"]
    assert torch.equal(tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)["input_ids"], ids)
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, ref(ids).logits, atol=1e-5, rtol=0)
        greedy = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id)
        assert torch.equal(greedy, ref.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tok.pad_token_id))
    # another dtype: dequantized, then cast
    half, _ = load_model_and_tokenizer(f16, dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    torch.testing.assert_close(half.lm_head.weight, model.lm_head.weight.to(torch.bfloat16), atol=0, rtol=0)
    # the memory planner reads the file's architecture from its metadata
    from common.planning.formulas import resolve_arch

    assert replace(resolve_arch(f16, "model"), source="") == replace(resolve_arch(str(folder), "model"), source="")


def test_the_evaluation_stage_measures_gguf_files_against_their_folder(exported, tmp_path):
    """The merged folder as baseline and KL reference; its f16 file has KL 0 to it (the same weights),
    the q8_0 file does not (its rounding is what is measured); the run records the files it read."""
    folder, files = exported
    three = (f"[{{name: base, model: {folder}}}, {{name: f16, model: {files['f16']}}}, "
             f"{{name: q8_0, model: {files['q8_0']}}}]")
    main(["--config", TINY, "--output_root", str(tmp_path), "--policies", three])
    run = tmp_path / "tiny"
    report = json.loads((run / "eval.json").read_text())
    kl = {name: s["kl"]["mean"] for name, s in report["policies"].items()}
    assert kl["base"] == 0.0 and abs(kl["f16"]) < 1e-6 and kl["q8_0"] != 0.0, kl
    for name in ("f16", "q8_0"):
        cmp = report["comparisons"][name]
        assert cmp["pairs"] == 16
        assert 0 <= cmp["mixed_win_rate"]["low"] <= cmp["mixed_win_rate"]["high"] <= 1
    inputs = json.loads((run / "provenance.json").read_text())["inputs"]
    described = {d["path"]: d for d in inputs.values()}
    assert described[str(files["q8_0"])]["kind"] == "file" and len(described[str(files["q8_0"])]["sha256"]) == 64


def test_a_gguf_files_padding_rows_do_not_make_another_vocabulary(tmp_path):
    """A model with more embeddings than tokens: the GGUF file pads its vocabulary with unused `[PAD<id>]`
    tokens; the KL judge's tokenizer check ignores those, and nothing else."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from common.models.tiny import build_tokenizer

    tok = build_tokenizer()
    config = LlamaConfig(vocab_size=len(tok) + 8, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    folder = save_model_folder(LlamaForCausalLM(config), tok, tmp_path / "padded")
    gguf_tok = load_tokenizer(str(write_gguf(folder, tmp_path / "padded.gguf", "f16")))
    folder_tok = load_tokenizer(str(folder))
    assert len(gguf_tok.get_vocab()) == len(folder_tok.get_vocab()) + 8
    assert same_vocabulary(gguf_tok, folder_tok)

    class Vocab:
        def __init__(self, vocab):
            self.vocab = vocab

        def get_vocab(self):
            return self.vocab

    assert not same_vocabulary(Vocab({"a": 0, "b": 1}), Vocab({"a": 1, "b": 0}))
    assert not same_vocabulary(Vocab({"a": 0}), Vocab({"a": 0, "c": 1}))
    assert not same_vocabulary(Vocab({"a": 0, "[PAD5]": 1}), Vocab({"a": 0}))  # not padding: a token at id 1


def test_a_missing_or_false_gguf_file_is_one_clear_line(exported, tmp_path):
    from serving.folders import ServingError, causal_lm_folder

    missing, fake = tmp_path / "missing.gguf", tmp_path / "fake.gguf"
    fake.write_text('{"not": "a model"}\n')
    for spec, match in ((missing, "not found: no such GGUF file"), (fake, "is not a GGUF file")):
        for load in (resolve_model, load_tokenizer, load_model_and_tokenizer):
            with pytest.raises(ModelNotFoundError, match=match) as err:
                load(str(spec))
            assert str(spec) in str(err.value) and "\n" not in str(err.value)
    folder, files = exported
    policies = f"[{{name: base, model: {folder}}}, {{name: other, model: {fake}}}]"
    with pytest.raises(ModelNotFoundError, match=f"policy 'other': {fake} is not a GGUF file"):
        main(["--config", TINY, "--output_root", str(tmp_path / "out"), "--policies", policies])
    assert not (tmp_path / "out").exists()
    # what a GGUF file cannot be: quantized again for QLoRA, or the folder the serving tools convert
    with pytest.raises(ValueError, match="not quantized again"):
        load_model_and_tokenizer(str(files["q8_0"]), quantization_config=object())
    with pytest.raises(ServingError, match="is a GGUF file, already an export"):
        causal_lm_folder(str(files["q8_0"]))
