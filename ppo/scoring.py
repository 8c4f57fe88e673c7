"""The PPO score: the reward-model score and rule components, mixed per domain (common/rewards)."""

from __future__ import annotations

from collections import defaultdict

import torch

from common.reward import RewardScorer
from common.rewards.mixer import COMPONENTS, RewardMixer, Sample
from ppo.data import Prompt


class MixedReward:
    """score_fn for `PPOTrainer`: (prompts, responses, experience) → mixed rewards (B,).

    The reward model's score enters as the accuracy component, normalized by the statistics
    saved with it; a prompt with a reference answer uses its domain's reference metric instead.
    After each call `last_log` holds `reward/<domain>/<component>` means for logging.
    """

    def __init__(self, mixer: RewardMixer, scorer: RewardScorer | None):
        self.mixer, self.scorer = mixer, scorer
        self.last_log: dict[str, float] = {}

    def __call__(self, prompts: list[Prompt], responses: list[str], exp) -> torch.Tensor:
        rm_scores = self.scorer([p.messages for p in prompts], responses, normalize=True) if self.scorer else None
        lengths = exp.response_mask.sum(dim=1).long().tolist()
        samples = [
            Sample(
                response=r,
                domain=p.domain,
                group=id(p),  # the trainer repeats the same Prompt object for its samples
                n_tokens=n,
                reference=p.reference,
                rm_score=None if rm_scores is None else rm_scores[i].item(),
            )
            for i, (p, r, n) in enumerate(zip(prompts, responses, lengths))
        ]
        mixed, raw = self.mixer(samples)
        by_domain: dict[str, list[int]] = defaultdict(list)
        for i, s in enumerate(samples):
            by_domain[s.domain].append(i)
        self.last_log = {
            f"reward/{domain}/{c}": raw[c][rows].nanmean().item()
            for domain, rows in by_domain.items()
            for c in COMPONENTS
            if not torch.isnan(raw[c][rows]).all()
        }
        return mixed
