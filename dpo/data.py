"""DPO data: preference groups read, cleaned and split by prompt exactly as the reward model's are
(`common.data.preferences`), then every group's ordered pairs (i ranked above j; ties give none) in
TRL's conversational preference format.

Pairs longer than `max_length` tokens are not dropped: the batches cut their shared prompt once,
the same for both replies (`dpo.batching.cut_pair`), and their number is reported.
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
    # pair_weighting = group: per training pair, the number of pairs its group gave (None: every
    # pair counts once — the default, and any data in which every group gave one pair)
    train_group_sizes: list[int] | None = None


def pairs_of(group: PreferenceGroup) -> list[dict]:
    """Every ordered pair of a group: response i ranked strictly above response j."""
    k = len(group.responses)
    return [{"prompt": group.prompt,
             "chosen": [{"role": "assistant", "content": group.responses[i]}],
             "rejected": [{"role": "assistant", "content": group.responses[j]}],
             "domain": group.domain}
            for i, j in permutations(range(k), 2) if group.ranks[i] < group.ranks[j]]


def prepare(cfg: DPOStageConfig) -> PreparedPairs:
    """Read, clean, split by prompt, mix, expand to pairs; raises DataError (file:line) before anything is written."""
    train_groups, val_groups, report = prepare_groups(cfg.data, cfg.val_fraction, cfg.seed, cfg.max_train_groups)
    train, sizes = [], []
    for g in train_groups:
        pairs = pairs_of(g)
        train += pairs
        sizes += [len(pairs)] * len(pairs)
    val = [p for g in val_groups for p in pairs_of(g)]
    report.add("expanded to pairs (train)", len(train_groups), len(train))
    weighted = cfg.pair_weighting == "group" and any(n > 1 for n in sizes)
    return PreparedPairs(Dataset.from_list(train), Dataset.from_list(val) if val else None, report,
                         sizes if weighted else None)
