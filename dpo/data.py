"""DPO data: preference groups read, cleaned and split by prompt exactly as the reward model's are
(`common.data.preferences`), then every group's ordered pairs (i ranked above j; ties give none) in
TRL's conversational preference format.

Pairs longer than `max_length` tokens are not dropped: the trainer cuts them from the left (the
reward model's rule — the replies, where a pair differs, sit at the end), and their number is
reported.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

from datasets import Dataset

from common.data.hygiene import HygieneReport
from common.data.preferences import PreferenceGroup, prepare_groups
from dpo.config import DPOStageConfig


@dataclass
class PreparedPairs:
    train: Dataset
    validation: Dataset | None
    report: HygieneReport
    truncated: int  # pairs (train + validation) longer than max_length, cut from the left


def pairs_of(group: PreferenceGroup) -> list[dict]:
    """Every ordered pair of a group: response i ranked strictly above response j."""
    k = len(group.responses)
    return [{"prompt": group.prompt,
             "chosen": [{"role": "assistant", "content": group.responses[i]}],
             "rejected": [{"role": "assistant", "content": group.responses[j]}],
             "domain": group.domain}
            for i, j in permutations(range(k), 2) if group.ranks[i] < group.ranks[j]]


def too_long(pair: dict, tokenizer, max_length: int) -> bool:
    def length(reply):
        return len(tokenizer.apply_chat_template(pair["prompt"] + reply, tokenize=True, return_dict=False))

    return max(length(pair["chosen"]), length(pair["rejected"])) > max_length


def prepare(cfg: DPOStageConfig, tokenizer) -> PreparedPairs:
    """Read, clean, split by prompt, mix, expand to pairs; raises DataError (file:line) before anything is written."""
    train_groups, val_groups, report = prepare_groups(cfg.data, cfg.val_fraction, cfg.seed, cfg.max_train_groups)
    train = [p for g in train_groups for p in pairs_of(g)]
    val = [p for g in val_groups for p in pairs_of(g)]
    report.add("expanded to pairs (train)", len(train_groups), len(train))
    truncated = sum(too_long(p, tokenizer, cfg.max_length) for p in train + val)
    return PreparedPairs(Dataset.from_list(train), Dataset.from_list(val) if val else None, report, truncated)
