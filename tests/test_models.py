import json

import pytest
import torch

from common.models import (
    DEFAULT_MODEL,
    ModelNotFoundError,
    load_model_and_tokenizer,
    resolve_model,
)


def test_missing_default_model_says_which_command_makes_it(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHFKIT_CACHE", str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="run `make setup`"):
        resolve_model(DEFAULT_MODEL)


def test_tiny_random_alias_is_built_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHFKIT_CACHE", str(tmp_path))
    folder = resolve_model("tiny-random")
    assert (tmp_path / "models/tiny-random/config.json").is_file() and folder.endswith("tiny-random")
    model, tok = load_model_and_tokenizer("tiny-random")
    assert model.config.num_hidden_layers == 2 and tok.pad_token is not None


def test_unknown_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found: no such folder"):
        resolve_model(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="not a model folder"):
        resolve_model(str(tmp_path / "empty"))


def test_tiny_model_chat_template_marks_assistant_tokens(tiny_model_dir):
    _, tok = load_model_and_tokenizer(str(tiny_model_dir))
    msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    out = tok.apply_chat_template(msgs, return_assistant_tokens_mask=True, return_dict=True)
    masked = [t for t, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(masked) == "hello<|im_end|>"


def test_default_model_is_installed_and_answers():
    """`make setup` converted the embedded GGUF into an ordinary folder that chats."""
    from common.models.generate import chat

    folder = resolve_model("default")
    config = json.loads(open(f"{folder}/config.json").read())
    assert "quantization_config" not in config
    model, tok = load_model_and_tokenizer("default")
    assert next(model.parameters()).dtype == torch.float32
    answer = chat(model, tok, [{"role": "user", "content": "What is the capital of France?"}], max_new_tokens=12)
    assert "Paris" in answer


def test_a_merged_adapter_loads_trainable_like_full_weights(tiny_model_dir, tmp_path):
    """A LoRA output merged into its base is a plain model: every weight trainable, so a critic or a
    full fine-tune can start from an SFT (or DPO) adapter folder."""
    from peft import get_peft_model

    from common.models import load_model_and_tokenizer
    from common.models.lora import LoraSettings, peft_config
    from common.training import record_adapter_base

    base, tok = load_model_and_tokenizer(str(tiny_model_dir))
    peft = get_peft_model(base, peft_config(LoraSettings(rank=4, alpha=8), "CAUSAL_LM"))
    peft.save_pretrained(tmp_path / "adapter")
    record_adapter_base(tmp_path / "adapter", str(tiny_model_dir))
    tok.save_pretrained(tmp_path / "adapter")
    merged, _ = load_model_and_tokenizer(str(tmp_path / "adapter"))
    assert all(p.requires_grad for p in merged.parameters())
