"""Reward-model scoring, shared by the reward-model stage (training, evaluation), PPO, BCQ and
the annotation app.

A reward model is a sequence classifier saved with `reward_config.json` (how text was encoded,
and the mean/std of its rewards so consumers can normalize). It has one output, or — `heads: odin`
— two (a quality head and a length head); reward_config.json then says which `outputs` make each
head (`quality`, `length`, `sum`), the default `head` (quality) and each head's `head_stats`.
`load_reward_scorer(folder, head=None)` returns a callable: (prompts, responses) → a (B,) float
tensor, of the chosen head.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from common.config import ConfigError
from common.data import Message

REWARD_CONFIG = "reward_config.json"


def encode_response(tokenizer, prompt: list[Message], response: str, max_length: int) -> list[int]:
    """Token ids of `prompt` + the assistant `response`, chat template applied, cut from the
    left to `max_length`: a pair's two texts differ only at their end, so the end is kept."""
    ids = tokenizer.apply_chat_template(
        [*prompt, {"role": "assistant", "content": response}], tokenize=True, return_dict=False
    )
    return list(ids[-max_length:])


def pad_batch(sequences: Sequence[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad → input_ids (N, L) and attention_mask (N, L)."""
    length = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


@dataclass
class RewardScorer:
    model: torch.nn.Module
    tokenizer: object
    max_length: int
    mean: float = 0.0
    std: float = 1.0

    @torch.no_grad()
    def __call__(
        self,
        prompts: Sequence[str | list[Message]],
        responses: Sequence[str],
        batch_size: int = 8,
        normalize: bool = False,
    ) -> torch.Tensor:
        """Rewards (B,) for each (prompt, response); `normalize` maps them to (r − mean) / std."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        self.model.eval()
        device = next(self.model.parameters()).device
        encoded = [
            encode_response(self.tokenizer, [{"role": "user", "content": p}] if isinstance(p, str) else p, r, self.max_length)
            for p, r in zip(prompts, responses)
        ]
        out = []
        for start in range(0, len(encoded), batch_size):
            ids, mask = pad_batch(encoded[start : start + batch_size], self.tokenizer.pad_token_id)
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits  # (b, 1)
            out.append(logits[:, 0].float().cpu())
        rewards = torch.cat(out) if out else torch.empty(0)
        return (rewards - self.mean) / self.std if normalize else rewards


def read_reward_config(spec: str) -> tuple[Path, dict]:
    """(folder, its reward_config.json); FileNotFoundError (with the command that makes one) when absent."""
    from common.models import resolve_model

    folder = Path(resolve_model(spec))
    config_path = folder / REWARD_CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} is not a reward model (no {REWARD_CONFIG}); `make rm` trains one")
    return folder, json.loads(config_path.read_text())


def choose_head(folder: Path, meta: dict, head: str | None) -> tuple[list[int], float, float]:
    """(the classifier outputs whose sum is `head`'s reward, its reward mean, its std); `head` None =
    the folder's default. A one-head folder has no heads to choose from (ConfigError, as for a bad head)."""
    outputs = meta.get("outputs")
    if outputs is None:
        if head is not None:
            raise ConfigError(f"{folder}: a single-head reward model has no '{head}' head (head= is for heads: odin)")
        return [0], meta.get("reward_mean", 0.0), meta.get("reward_std", 1.0)
    head = head or meta["head"]
    if head not in outputs:
        raise ConfigError(f"{folder}: head must be one of {', '.join(sorted(outputs))}, got {head!r}")
    stats = meta["head_stats"][head]
    return list(outputs[head]), stats["reward_mean"], stats["reward_std"]


def keep_outputs(model: torch.nn.Module, rows: list[int]) -> None:
    """Make the classifier a 1-output linear layer scoring the sum of its outputs `rows`: exact, since
    a linear layer's outputs add up; every consumer then reads logits[:, 0] as before."""
    name = "score" if hasattr(model, "score") else "classifier"
    layer = getattr(model, name)
    if not isinstance(layer, torch.nn.Linear):
        raise ValueError(f"cannot choose a head of a {type(layer).__name__} classifier (a linear layer is needed)")
    if layer.out_features == 1:
        return
    one = torch.nn.Linear(layer.in_features, 1, bias=layer.bias is not None, device=layer.weight.device,
                          dtype=layer.weight.dtype)
    with torch.no_grad():
        one.weight.copy_(layer.weight[rows].sum(dim=0, keepdim=True))  # (1, D)
        if layer.bias is not None:
            one.bias.copy_(layer.bias[rows].sum(dim=0, keepdim=True))
    setattr(model, name, one)
    model.config.num_labels = 1


def load_reward_model(spec: str, head: str | None = None):
    """A saved reward model (full weights or LoRA adapter folder) → (a 1-output sequence classifier
    scoring `head`, its tokenizer, {max_length, reward_mean, reward_std}); trainable, like any model."""
    from transformers import AutoModelForSequenceClassification

    from common.models import load_model_and_tokenizer

    folder, meta = read_reward_config(spec)
    rows, mean, std = choose_head(folder, meta, head)
    model, tokenizer = load_model_and_tokenizer(str(folder), model_class=AutoModelForSequenceClassification,
                                                num_labels=meta.get("num_labels", 1))
    model.config.pad_token_id = tokenizer.pad_token_id
    keep_outputs(model, rows)
    return model, tokenizer, {"max_length": meta["max_length"], "reward_mean": mean, "reward_std": std}


def load_reward_scorer(spec: str, device: str | torch.device | None = None, head: str | None = None) -> RewardScorer:
    """A saved reward model → a `RewardScorer` of `head` (quality, length or sum for a heads: odin model;
    None = its default, quality; a one-head model takes None only)."""
    model, tokenizer, meta = load_reward_model(spec, head)
    # a judge, never trained through: frozen weights also keep autocast from caching a bf16 copy
    # of every one of them for as long as its region lasts (it caches casts of leaves that need grad)
    model.requires_grad_(False).eval()
    if device is not None:
        model.to(device)
    return RewardScorer(model, tokenizer, meta["max_length"], meta["reward_mean"], meta["reward_std"])


def ranking_uncertainty(scorers: Sequence[RewardScorer], prompt: str | list[Message], replies: Sequence[str],
                        strategy: str = "margin") -> tuple[torch.Tensor, float]:
    """How sure the reward model(s) are about ranking K candidate `replies` to `prompt`:
    ((M, K) rewards — one row per scorer, an ensemble's members —, the uncertainty in [0, 1] of
    `annotation_ui.acquisition`: `margin` (one model or the mean of several) or `ensemble` (≥ 2))."""
    from annotation_ui.acquisition import uncertainty

    scores = torch.stack([s([prompt] * len(replies), list(replies)) for s in scorers])  # (M, K)
    return scores, uncertainty(scores.numpy(), strategy)
