"""A tiny random-init Llama with a locally trained byte-level BPE tokenizer.

Built in a second with no network, deterministic for a given seed: the test suite and the
`tiny` recipes use it (model spec `tiny-random`). It learns, it just knows nothing.
"""

from __future__ import annotations

from pathlib import Path

from common.models.chat_templates import CHATML

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Enough text for a few hundred merges in English, Chinese and digits.
_CORPUS = [
    "The patient should take the medicine twice a day with food.",
    "Interest rates rise when inflation is high; bonds then lose value.",
    "A contract needs an offer, an acceptance and consideration.",
    "def add(a, b):\n    return a + b\n",
    "What is 12 plus 30? The answer is 42.",
    "Hello! How can I help you today? I am a helpful assistant.",
    "请问今天天气怎么样？今天是晴天。",
    "病人应该每天服药两次。合同需要要约和承诺。",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000",
    "user assistant system",
]


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(_CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML,
    )


def build_tiny_model(folder: str | Path, *, hidden_size: int = 32, seed: int = 0) -> Path:
    """Write a tiny Llama + tokenizer into `folder` (atomically) and return it."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    from common.models import save_model_folder

    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return save_model_folder(model, tokenizer, folder)
