"""The PPO score: the reward-model score and rule components, mixed per domain (common/rewards)."""

from __future__ import annotations

import time
from collections import defaultdict

import torch

from common import distributed
from common.data.prompts import Prompt
from common.rewards.ensemble import EnsembleScorer
from common.rewards.mixer import COMPONENTS, RewardMixer, Sample
from common.rewards.scorer import RewardScorer


class MixedReward:
    """score_fn for `PPOTrainer`: (prompts, responses, experience) → mixed rewards (B,).

    The reward model's score enters as the accuracy component (normalized by the statistics saved
    with it, then per `RewardMixer.rm_saved_stats`); a prompt with a reference answer uses its
    domain's reference metric instead. After each call `last_log` holds
    `reward/<domain>/<component>` means over the whole step (all ranks) for logging, `reward/all/<component>`
    over every domain.

    The reward model may be an ensemble (`common.rewards.ensemble`): its combined score is the
    proxy. A `gold` scorer, never optimised, scores the same replies once, without gradients. Logged
    besides: `proxy/score` and `gold/score` (the two normalised scores' means, Gao et al.'s proxy and
    gold curves), `proxy/ensemble_std` (an ensemble's mean disagreement) and `time/proxy`, `time/gold`
    (seconds each judge took: what an ensemble's extra members cost).
    """

    def __init__(self, mixer: RewardMixer, scorer: RewardScorer | EnsembleScorer | None,
                 gold: RewardScorer | EnsembleScorer | None = None):
        self.mixer, self.scorer, self.gold = mixer, scorer, gold
        self.last_log: dict[str, float] = {}

    @staticmethod
    def _judge(scorer, prompts: list[Prompt], responses: list[str], name: str, figures: dict) -> torch.Tensor:
        """Normalised scores (B,); `figures` gets time/<name>, <name>/score and, for an ensemble,
        <name>/ensemble_std (per reply: the members' standard deviation)."""
        t0 = time.perf_counter()
        scores = scorer([p.messages for p in prompts], responses, normalize=True)
        figures[f"time/{name}"] = time.perf_counter() - t0
        figures[f"{name}/score"] = scores.tolist()
        if isinstance(scorer, EnsembleScorer):
            figures[f"{name}/ensemble_std"] = scorer.last_members.std(dim=0, correction=0).tolist()
        return scores

    def __call__(self, prompts: list[Prompt], responses: list[str], exp) -> torch.Tensor:
        judged: dict = {}  # this rank's: seconds, and per-reply lists pooled over ranks below
        rm_scores = self._judge(self.scorer, prompts, responses, "proxy", judged) if self.scorer else None
        if self.gold is not None:
            self._judge(self.gold, prompts, responses, "gold", judged)
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
        self.last_log.update(pooled(distributed.all_gather_objects(judged)))
        return mixed[offset : offset + len(local)]


def pooled(parts: list[dict]) -> dict[str, float]:
    """Every rank's judged figures as one: per-reply lists → their mean over all replies, seconds →
    the slowest rank's."""
    out = {}
    for key in parts[0]:
        values = [part[key] for part in parts]
        if isinstance(values[0], list):
            flat = [v for part in values for v in part]
            out[key] = sum(flat) / len(flat)
        else:
            out[key] = max(values)
    return out
