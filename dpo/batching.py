"""How DPO pairs reach the model: over-long pairs cut once, the same for both replies, and (with
`pair_weighting: group`) pairs drawn so that every preference group counts once.

Cutting. TRL's `DataCollatorForPreference` cuts prompt+chosen and prompt+rejected separately, so
with a long prompt the two halves of one pair could see different contexts (the shorter reply
keeps more of the prompt) and the log-ratio difference DPO learns from would compare replies to
different questions. `cut_pair` cuts the shared prompt once: both replies see the same tokens.

Weighting. A K-way ranking gives up to K(K−1)/2 pairs; by default each pair counts once, so a
4-response ranking weighs 6× a plain pair. `group` weighting is the reward model's
`pair_weighting: group` for DPO: each pair has weight 1 / (pairs of its group). TRL 1.16's
DPOTrainer averages the per-pair losses inside its `_compute_loss` with no per-example weight (its
`use_weighting` is WPO's probability weights), so rather than rewrite that method the weights
become sampling probabilities: each epoch draws as many pairs as there are, with replacement,
pair i with probability ∝ its weight — in expectation the loss is the mean over groups of each
group's mean pair loss, the reward model's objective. Draws depend on (seed, epoch) only: every
process draws the same order (and takes its shard), and a resumed run draws the same again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Sampler
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference


def cut_pair(prompt: list[int], chosen: list[int], rejected: list[int], max_length: int
             ) -> tuple[list[int], list[int], list[int]]:
    """(prompt, chosen, rejected) token ids such that prompt + either reply ≤ `max_length` tokens,
    with ONE prompt for both replies.

    The prompt loses its oldest tokens until prompt + the longer reply fits, as the reward model
    keeps the end of a dialogue (the replies, where a pair differs). It keeps at least
    max_length // 4 tokens (all of it if shorter): when a reply alone leaves less room than that,
    both replies lose their end instead, cut to the same room. A pair that fits is unchanged."""
    longest = max(len(chosen), len(rejected))
    if len(prompt) + longest <= max_length:
        return prompt, chosen, rejected
    keep = max(max_length - longest, min(len(prompt), max_length // 4))
    room = max_length - keep
    return prompt[len(prompt) - keep :], chosen[:room], rejected[:room]


def is_cut(row: dict, max_length: int) -> bool:
    """Whether `cut_pair` changes a tokenized pair (TRL's `prompt_ids`, `chosen_ids`, `rejected_ids`)."""
    return len(row["prompt_ids"]) + max(len(row["chosen_ids"]), len(row["rejected_ids"])) > max_length


@dataclass
class SharedPromptCollator:
    """TRL's preference collator on pairs cut by `cut_pair`: what it receives already fits, so its
    own per-sequence truncation stays off (`max_length=None`)."""

    pad_token_id: int
    max_length: int
    pad_to_multiple_of: int | None = None

    def __post_init__(self):
        self.inner = DataCollatorForPreference(self.pad_token_id, max_length=None,
                                               pad_to_multiple_of=self.pad_to_multiple_of)

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        cut = []
        for e in examples:
            prompt, chosen, rejected = cut_pair(e["prompt_ids"], e["chosen_ids"], e["rejected_ids"], self.max_length)
            cut.append({**e, "prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected})
        return self.inner(cut)


def group_weights(group_sizes: list[int]) -> list[float]:
    """Per pair, 1 / (number of pairs of its group): each group's pairs sum to 1."""
    return [1.0 / n for n in group_sizes]


class GroupWeightedSampler(Sampler[int]):
    """`len(weights)` pair indices per epoch, drawn with replacement, index i with probability
    weights[i] / Σ weights; the draw depends only on (seed, epoch)."""

    def __init__(self, weights: list[float], seed: int):
        self.weights = torch.tensor(weights, dtype=torch.double)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by the Trainer (through accelerate) each epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.weights)

    def __iter__(self):
        draw = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.multinomial(self.weights, len(self.weights), replacement=True, generator=draw).tolist())


class PairDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer; with `pair_weights` (one per training pair, in dataset order) the training
    pairs are drawn by `GroupWeightedSampler` instead of shuffled."""

    def __init__(self, *args, pair_weights: list[float] | None = None, **kwargs):
        self.pair_weights = pair_weights
        super().__init__(*args, **kwargs)

    def _get_train_sampler(self, train_dataset=None):
        if self.pair_weights is None:
            return super()._get_train_sampler(train_dataset)
        size = len(train_dataset if train_dataset is not None else self.train_dataset)
        if size != len(self.pair_weights):
            raise ValueError(f"{len(self.pair_weights)} pair weights for {size} training pairs")
        return GroupWeightedSampler(self.pair_weights, self.args.seed)
