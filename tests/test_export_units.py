"""The export's small parts against hand-worked values: llama.cpp's rotary permutation, log-probs
and KL, the chat template without training markers, data licences, the evaluation to cite, the
pre-tokenizer names, the kinds registry; a tiny Qwen3 written to GGUF read back by transformers;
and, where llama-cpp-python is installed, the GGUF files in llama.cpp itself."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import re

import numpy as np
import pytest
import torch

from export.chain import ExportError
from export.config import ExportConfig, default_name
from export.gguf_file import QWEN2_REGEX, permute_qk, plain_template, pre_tokenizer_name, write_gguf
from export.kinds import KINDS, check_kinds
from export.sources import find_evaluation, licence_of
from export.verify import compare, kl_rows, token_logprobs

from helpers.stages import REPO


def test_permute_qk_interleaves_each_heads_two_halves():
    w = np.arange(8, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)  # rows 0..7, 2 heads of 4
    assert permute_qk(w, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert permute_qk(w, 1)[:, 0].tolist() == [0, 4, 1, 5, 2, 6, 3, 7]


def test_token_logprobs_kl_and_compare_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(2.0), 0.0], [0.0, 0.0]])  # p = (1/4, 3/4), (2/3, 1/3), …
    ids = torch.tensor([5, 1, 0])  # the first id is never scored
    assert torch.allclose(token_logprobs(logits, ids), torch.tensor([math.log(3 / 4), math.log(2 / 3)]))
    p, q = torch.tensor([[0.0, 0.0]]), torch.tensor([[0.0, math.log(3.0)]])  # (1/2, 1/2) vs (1/4, 3/4)
    assert kl_rows(p, q).item() == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3), abs=1e-6)
    assert kl_rows(q, q).item() == pytest.approx(0.0, abs=1e-7)
    figures = compare([torch.tensor([0.0, -1.0]), torch.tensor([-2.0])], [torch.tensor([0.5, -1.0]), torch.tensor([-1.0])])
    assert figures == {"tokens": 3, "max_abs": 1.0, "mean_abs": pytest.approx(0.5)}


def test_chat_template_without_generation_markers_renders_the_same(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    plain = plain_template(tok.chat_template)
    assert "{% generation %}" in tok.chat_template and "generation %}" not in plain
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "2+2?"}]
    for prompt in (True, False):
        assert (tok.apply_chat_template(chat, chat_template=plain, tokenize=False, add_generation_prompt=prompt)
                == tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=prompt))


def test_data_licences_come_from_the_files_beside_the_data(tmp_path):
    for name, files in {"hh": {"README.md": "From the repo\n(MIT License,\nCopyright (c) 2022 Anthropic). Use it."},
                        "gsm": {"LICENSE": "\nMIT License\n\nCopyright (c) 2021 OpenAI", "README.md": "(Apache License)"},
                        "ours": {"README.md": "Prompts written for this project."}, "bare": {},
                        "cites": {"README.md": "Cut from GSM8K (`../gsm8k/LICENSE`); the rest written for this project."}
                        }.items():
        (tmp_path / name).mkdir()
        for fname, text in files.items():
            (tmp_path / name / fname).write_text(text)
    assert licence_of(tmp_path / "hh/x.jsonl.gz") == "MIT License, Copyright (c) 2022 Anthropic"
    assert licence_of(tmp_path / "gsm/x.jsonl.gz") == "MIT License"  # LICENSE first
    assert licence_of(tmp_path / "ours/x.jsonl") == "written for this project"
    assert licence_of(tmp_path / "bare/x.jsonl").startswith("not stated")
    assert licence_of(tmp_path / "cites/x.jsonl") == "written for this project"  # a path to a LICENSE is no licence


def test_every_shipped_data_folder_states_where_its_rows_come_from():
    for folder in sorted(p for p in (REPO / "data").iterdir() if p.is_dir()):
        licence = licence_of(next(folder.glob("*.jsonl")))
        assert not licence.startswith("not stated") and "/" not in licence, (folder, licence)
    assert "MIT License" in licence_of(REPO / "data/constraints/train.jsonl")  # HH-RLHF and GSM8K rows


def test_the_evaluation_cited_is_the_newest_that_compared_this_model(tmp_path):
    import os

    model, other = tmp_path / "runs/ppo/a/model", tmp_path / "runs/sft/a/model"
    model.mkdir(parents=True)

    def report(name: str, baseline_model, policy_model, mtime: int, status="complete") -> None:
        folder = tmp_path / "evals" / name
        folder.mkdir(parents=True)
        cfg = {"policies": [{"name": "base", "model": str(baseline_model)}, {"name": "pol", "model": str(policy_model)}]}
        (folder / "eval.json").write_text(json.dumps({"status": status, "baseline": "base", "config": cfg}))
        os.utime(folder / "eval.json", (mtime, mtime))

    report("old", other, model, 100)
    report("new", other, model, 200)
    report("newer-as-baseline", model, other, 300)
    report("newest-unfinished", other, model, 400, status="running")
    path, _, policy = find_evaluation(model, None, str(tmp_path / "evals"))
    assert path.parent.name == "new" and policy == "pol"
    assert find_evaluation(other, None, str(tmp_path / "nowhere")) is None
    assert find_evaluation(model, str(tmp_path / "evals/old"), "unused")[0].parent.name == "old"
    with pytest.raises(ExportError, match="did not compare"):
        find_evaluation(model, str(tmp_path / "evals/newer-as-baseline"), "unused")
    with pytest.raises(ExportError, match="no eval.json"):
        find_evaluation(model, str(tmp_path / "evals/missing"), "unused")


def test_default_names_and_pre_tokenizers():
    assert default_name("runs/ppo/default") == "ppo-default" == default_name("runs/ppo/default/model/")
    assert default_name("default") == "default"
    assert pre_tokenizer_name({"pre_tokenizer": {"type": "ByteLevel", "use_regex": True}}, "t") == "gpt-2"
    qwen = {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": QWEN2_REGEX}},
                                                   {"type": "ByteLevel", "use_regex": False}]}
    assert pre_tokenizer_name({"pre_tokenizer": qwen}, "t") == "qwen2"
    with pytest.raises(ExportError, match="tok.json: pre_tokenizer .* llama.cpp"):
        pre_tokenizer_name({"pre_tokenizer": {"type": "Metaspace"}}, "tok.json")


def test_kinds_registry_refuses_unknown_and_uninstallable_kinds(monkeypatch):
    assert [k.name for k in check_kinds(["gguf-f16", "gguf-q8_0"])] == ["gguf-f16", "gguf-q8_0"]
    with pytest.raises(ExportError, match="unknown export kind 'onnx'.*gguf-f16"):
        check_kinds(["onnx"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(ExportError, match="gguf-q4_K_M needs the Python module llama_cpp: pip install"):
        check_kinds(["gguf-q4_K_M"])


def test_the_kinds_help_lists_exactly_the_registered_kinds():
    help_line = next(f for f in dataclasses.fields(ExportConfig) if f.name == "kinds").metadata["help"]
    listed = re.findall(r"gguf-\w+", help_line)
    assert listed == list(KINDS) and "gguf-q4_K_M*" in help_line and "needs llama_cpp: pip install" in help_line


def test_a_tiny_qwen3_round_trips_through_gguf(tmp_path):
    """Qwen3: per-head query/key norms, no rotary permutation; fp16 weights make the f16 file lossless.
    head_dim is Qwen3's 128: transformers' GGUF reader takes Qwen3Config's default for it (the file's
    key_length is what llama.cpp reads)."""
    from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3ForCausalLM

    from common.models import save_model_folder
    from common.models.tiny import build_tokenizer

    tok = build_tokenizer()
    config = Qwen3Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=128, max_position_embeddings=256,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).to(torch.float16)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)  # not all ones: a norm written to the wrong place would show
    folder = save_model_folder(model, tok, tmp_path / "qwen3")
    path = write_gguf(folder, tmp_path / "qwen3-f16.gguf", "f16")
    back = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = torch.tensor([tok("The patient should take the medicine twice a day.")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(back(ids).logits, ref(ids).logits, atol=1e-5)


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_gguf_files_generate_in_llama_cpp_itself(tiny_model_dir, tmp_path):
    """llama.cpp reads our f16 file and decodes greedily like transformers does on the same weights;
    its own quantizer makes a q4_K_M file from it that it loads and runs."""
    import llama_cpp
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from export.gguf_file import llama_cpp_quantize

    f16 = write_gguf(tiny_model_dir, tmp_path / "tiny-f16.gguf", "f16")
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    hf = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float16).float()  # the f16 file's weights
    ids = tok("What is 12 plus 30?")["input_ids"]
    expected = hf.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False, eos_token_id=None)[0, len(ids):]
    llm = llama_cpp.Llama(str(f16), n_ctx=128, verbose=False, n_threads=2)
    assert llm.tokenize(b"What is 12 plus 30?", add_bos=False, special=True) == ids
    got = []
    for token in llm.generate(ids, top_k=1, temp=0.0, reset=True):
        got.append(token)
        if len(got) == 8:
            break
    assert got == expected.tolist()
    q4 = llama_cpp_quantize(f16, tmp_path / "tiny-q4_K_M.gguf", "q4_K_M")
    small = llama_cpp.Llama(str(q4), n_ctx=128, verbose=False, n_threads=2)
    drawn = []
    for token in small.generate(ids, top_k=1, temp=0.0, reset=True):
        drawn.append(token)
        if len(drawn) == 4:
            break
    assert len(drawn) == 4 and all(0 <= t < len(tok) for t in drawn)
    assert q4.stat().st_size < f16.stat().st_size
