"""A merged Hugging Face folder → one GGUF file for llama.cpp and Ollama, through the `gguf` package
(llama.cpp's own Python library: its writer, its tensor-name map, its tokenizer metadata reader and
its quantizers); K-quants through llama.cpp's own C++ quantizer (`llama-cpp-python`), when installed.

    write_gguf("runs/export/ppo-default", "out/ppo-default-q8_0.gguf", "q8_0")

What llama.cpp expects of a Llama, and this writes (the same keys llama.cpp's converter wrote into
the default model's GGUF file): the hyper-parameters under `<arch>.*`, the byte-level BPE vocabulary
(`tokenizer.ggml.*`, merges and special tokens through `gguf.SpecialVocab`), the chat template, and
the tensors under llama.cpp's names (`gguf.get_tensor_name_map`). llama.cpp's rotary embedding pairs
dimension i with i + d/2 within each head, as Hugging Face's Llama does after its own conversion from
Meta's layout; llama.cpp expects Meta's interleaved layout, so the query and key projections of a
Llama are permuted back (each head's rows split in two halves and interleaved). transformers' GGUF
reader undoes exactly this permutation, so a file written wrongly would not load back the same.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.chain import ExportError


@dataclass(frozen=True)
class Arch:
    name: str  # gguf.MODEL_ARCH member
    permute_qk: bool


# Hugging Face architecture → how it is written. Others are refused with their name.
ARCHITECTURES = {
    "LlamaForCausalLM": Arch("LLAMA", permute_qk=True),
    "Qwen2ForCausalLM": Arch("QWEN2", permute_qk=False),
    "Qwen3ForCausalLM": Arch("QWEN3", permute_qk=False),
}

# the file types the gguf package writes itself: name → (LlamaFileType member, quantization of 2-D weights)
PY_TYPES = {"f16": ("MOSTLY_F16", "F16"), "bf16": ("MOSTLY_BF16", "BF16"), "q8_0": ("MOSTLY_Q8_0", "Q8_0")}
# the K-quants llama.cpp's quantizer makes from the f16 file (llama_ftype names)
LLAMA_CPP_TYPES = {"q4_K_M": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_K_M": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
                   "q6_K": "LLAMA_FTYPE_MOSTLY_Q6_K"}

# Pre-tokenizers llama.cpp knows by name, recognised from tokenizer.json's `pre_tokenizer`: the
# GPT-2 regex inside ByteLevel (SmolLM2 as converted here, the tiny test models), and Qwen2's split.
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
               r"\s+(?!\S)|\s+")


def pre_tokenizer_name(tokenizer_json: dict, source: str) -> str:
    """llama.cpp's name for the pre-tokenizer of a byte-level BPE tokenizer.json."""
    pre = tokenizer_json.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if (len(steps) == 2 and steps[0].get("type") == "Split" and steps[0].get("pattern", {}).get("Regex") == QWEN2_REGEX
            and steps[1].get("type") == "ByteLevel" and not steps[1].get("use_regex", True)):
        return "qwen2"
    raise ExportError(f"{source}: pre_tokenizer {json.dumps(pre)[:120]} is not one llama.cpp knows by name here "
                      "(gpt-2, qwen2); the GGUF export does not guess")


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Hugging Face's rotary layout → Meta's (llama.cpp's): within each of `n_head` heads, rows
    [0, d/2) and [d/2, d) are interleaved. (n_head·d, in) → (n_head·d, in)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def plain_template(template: str) -> str:
    """The chat template without transformers' `{% generation %}` markers (training-only: they mark
    the assistant's tokens for the loss, and render nothing), which llama.cpp's template engine need not know."""
    return re.sub(r"{%-?\s*(end)?generation\s*-?%}", "", template)


def vocabulary(folder: Path, n_vocab: int):
    """(tokens, token types) in id order from tokenizer.json, padded to the model's `n_vocab` rows:
    added special tokens are CONTROL, other added tokens USER_DEFINED, padding UNUSED."""
    import gguf

    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    model = data["model"]
    if model.get("type") != "BPE" or model.get("byte_fallback") or (data.get("decoder") or {}).get("type") != "ByteLevel":
        raise ExportError(f"{folder}/tokenizer.json: only byte-level BPE tokenizers are written to GGUF here")
    by_id = {i: tok for tok, i in model["vocab"].items()}
    types = {i: gguf.TokenType.NORMAL for i in by_id}
    for added in data.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
        types[added["id"]] = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
    if max(by_id) >= n_vocab:
        raise ExportError(f"{folder}: the tokenizer has {max(by_id) + 1} tokens, the model only {n_vocab} embeddings")
    tokens = [by_id.get(i, f"[PAD{i}]") for i in range(n_vocab)]
    kinds = [types.get(i, gguf.TokenType.UNUSED) for i in range(n_vocab)]
    return tokens, kinds, pre_tokenizer_name(data, f"{folder}/tokenizer.json")


def _add_hparams(writer, config: dict) -> None:
    n_head = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // n_head
    rope = config.get("rope_parameters") or {"rope_type": "default", "rope_theta": config.get("rope_theta", 10000.0)}
    if rope.get("rope_type", "default") != "default":
        raise ExportError(f"config.json: rope_type {rope['rope_type']!r} is not converted to GGUF here (only default)")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config.get("num_key_value_heads", n_head))
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config["hidden_size"] // n_head:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)


def _add_tokenizer(writer, folder: Path, n_vocab: int) -> None:
    import gguf

    tokens, kinds, pre = vocabulary(folder, n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(kinds)
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=n_vocab)
    if isinstance(special.chat_template, str):
        special.chat_template = plain_template(special.chat_template)
    if "bos" not in special.add_special_token:  # what the tokenizer does: SmolLM2 and Qwen add no BOS
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(folder)
        special.add_special_token["bos"] = bool(tok("a")["input_ids"][:1] == [tok.bos_token_id])
    special.add_to_gguf(writer, quiet=True)


def _tensors(folder: Path):
    """(name, fp32 array) of every tensor in the folder's safetensors shards."""
    from safetensors import safe_open

    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(shard, framework="pt") as f:
            for name in f.keys():  # noqa: SIM118 — safe_open is not a mapping
                yield name, f.get_tensor(name).float().numpy()


def write_gguf(folder: str | Path, out: str | Path, file_type: str, name: str | None = None) -> Path:
    """Write the merged Hugging Face `folder` as a GGUF file of `file_type` (f16 | bf16 | q8_0; 1-D
    tensors stay F32, a weight whose rows do not split into quantization blocks falls back to F16, as
    llama.cpp's converter does)."""
    import gguf
    from gguf.quants import quantize

    folder, out = Path(folder), Path(out)
    config = json.loads((folder / "config.json").read_text())
    arch_name = (config.get("architectures") or ["?"])[0]
    if arch_name not in ARCHITECTURES:
        raise ExportError(f"{folder}/config.json: {arch_name} is not written to GGUF here "
                          f"(known: {', '.join(ARCHITECTURES)})")
    arch = ARCHITECTURES[arch_name]
    model_arch = getattr(gguf.MODEL_ARCH, arch.name)
    ftype_name, qname = PY_TYPES[file_type]
    qtype = getattr(gguf.GGMLQuantizationType, qname)
    n_layers, n_head = config["num_hidden_layers"], config["num_attention_heads"]
    n_kv = config.get("num_key_value_heads", n_head)
    names = gguf.get_tensor_name_map(model_arch, n_layers)

    tmp = out.with_name(out.name + ".tmp")
    writer = gguf.GGUFWriter(tmp, gguf.MODEL_ARCH_NAMES[model_arch], use_temp_file=True)
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name or folder.name)
    _add_hparams(writer, config)
    writer.add_file_type(getattr(gguf.LlamaFileType, ftype_name))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, folder, config["vocab_size"])
    for hf_name, data in _tensors(folder):
        if hf_name == "lm_head.weight" and config.get("tie_word_embeddings"):
            continue  # llama.cpp reads the output projection from token_embd when output.weight is absent
        if arch.permute_qk and hf_name.endswith("q_proj.weight"):
            data = permute_qk(data, n_head)
        elif arch.permute_qk and hf_name.endswith("k_proj.weight"):
            data = permute_qk(data, n_kv)
        new_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise ExportError(f"{folder}: tensor {hf_name} has no GGUF name for {arch_name}")
        if data.ndim == 1:
            writer.add_tensor(new_name, data.astype(np.float32))
            continue
        try:
            packed = quantize(data, qtype)
        except gguf.QuantError:
            packed, qtype_used = quantize(data, gguf.GGMLQuantizationType.F16), gguf.GGMLQuantizationType.F16
        else:
            qtype_used = qtype
        writer.add_tensor(new_name, packed, raw_dtype=qtype_used)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out)
    return out


def llama_cpp_quantize(src: Path, out: Path, file_type: str) -> Path:
    """A K-quant GGUF (q4_K_M …) made from an f16 GGUF by llama.cpp's own quantizer (llama-cpp-python)."""
    try:
        import llama_cpp
    except ImportError:
        raise ExportError(f"gguf-{file_type} needs llama.cpp's quantizer: pip install -e '.[llama-cpp]' "
                          "(llama-cpp-python, compiled on install)") from None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_CPP_TYPES[file_type])
    tmp = out.with_name(out.name + ".tmp")
    if llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), params) != 0:
        raise ExportError(f"llama.cpp could not quantize {src} to {file_type}")
    tmp.replace(out)
    return out
