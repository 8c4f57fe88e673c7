"""Reward-model scoring, shared by the reward-model stage (training, evaluation), PPO, BCQ and
the annotation app.

A reward model is a sequence classifier with one output, saved with `reward_config.json`
(how text was encoded, and the mean/std of its rewards so consumers can normalize).
`load_reward_scorer(folder)` returns a callable: (prompts, responses) → a (B,) float tensor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

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


def load_reward_scorer(spec: str, device: str | torch.device | None = None) -> RewardScorer:
    """A saved reward model (full weights or LoRA adapter folder) → a `RewardScorer`."""
    from transformers import AutoModelForSequenceClassification

    from common.models import load_model_and_tokenizer, resolve_model

    folder = Path(resolve_model(spec))
    config_path = folder / REWARD_CONFIG
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} is not a reward model (no {REWARD_CONFIG}); `make rm` trains one")
    meta = json.loads(config_path.read_text())
    model, tokenizer = load_model_and_tokenizer(str(folder), model_class=AutoModelForSequenceClassification, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    # a judge, never trained through: frozen weights also keep autocast from caching a bf16 copy
    # of every one of them for as long as its region lasts (it caches casts of leaves that need grad)
    model.requires_grad_(False).eval()
    if device is not None:
        model.to(device)
    return RewardScorer(model, tokenizer, meta["max_length"], meta.get("reward_mean", 0.0), meta.get("reward_std", 1.0))


def ranking_uncertainty(scorers: Sequence[RewardScorer], prompt: str | list[Message], replies: Sequence[str],
                        strategy: str = "margin") -> tuple[torch.Tensor, float]:
    """How sure the reward model(s) are about ranking K candidate `replies` to `prompt`:
    ((M, K) rewards — one row per scorer, an ensemble's members —, the uncertainty in [0, 1] of
    `annotation_ui.acquisition`: `margin` (one model or the mean of several) or `ensemble` (≥ 2))."""
    from annotation_ui.acquisition import uncertainty

    scores = torch.stack([s([prompt] * len(replies), list(replies)) for s in scorers])  # (M, K)
    return scores, uncertainty(scores.numpy(), strategy)
