"""The PPO score: the reward-model score and rule components, mixed per domain (common/rewards)."""

from __future__ import annotations

from collections import defaultdict

import torch

from common import distributed
from common.data.prompts import Prompt
from common.rewards.mixer import COMPONENTS, RewardMixer, Sample
from common.rewards.scorer import RewardScorer


class MixedReward:
    """score_fn for `PPOTrainer`: (prompts, responses, experience) → mixed rewards (B,).

    The reward model's score enters as the accuracy component (normalized by the statistics saved
    with it, then per `RewardMixer.rm_saved_stats`); a prompt with a reference answer uses its
    domain's reference metric instead. After each call `last_log` holds
    `reward/<domain>/<component>` means over the whole step (all ranks) for logging, `reward/all/<component>`
    over every domain.
    """

    def __init__(self, mixer: RewardMixer, scorer: RewardScorer | None):
        self.mixer, self.scorer = mixer, scorer
        self.last_log: dict[str, float] = {}

    def __call__(self, prompts: list[Prompt], responses: list[str], exp) -> torch.Tensor:
        rm_scores = self.scorer([p.messages for p in prompts], responses, normalize=True) if self.scorer else None
        lengths = exp.response_mask.sum(dim=1).long().tolist()
        groups: dict[int, int] = {}  # the trainer repeats the same Prompt object for its samples
        rank = distributed.rank()
        local = [
            Sample(
                response=r,
                domain=p.domain,
                group=rank * len(prompts) + groups.setdefault(id(p), len(groups)),  # unique across ranks
                n_tokens=n,
                reference=p.reference,
                rm_score=None if rm_scores is None else rm_scores[i].item(),
                constraints=p.constraints,
            )
            for i, (p, r, n) in enumerate(zip(prompts, responses, lengths))
        ]
        # with several ranks, mix the whole step's samples on every rank: the running
        # statistics stay identical everywhere; each rank keeps its own rows
        everyone = distributed.all_gather_objects(local)
        samples = [s for part in everyone for s in part]
        offset = sum(len(part) for part in everyone[:rank]) if len(everyone) > 1 else 0
        mixed, raw = self.mixer(samples)
        by_domain: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(samples):
            by_domain[s.domain].append(i)
        self.last_log = {
            f"reward/{domain}/{c}": raw[c][rows].nanmean().item()
            for domain, rows in [("all", list(range(len(samples)))), *by_domain.items()]
            for c in COMPONENTS
            if not torch.isnan(raw[c][rows]).all()
        }
        return mixed[offset : offset + len(local)]
