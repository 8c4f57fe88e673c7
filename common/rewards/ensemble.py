"""Reward-model ensembles (Coste et al. 2023, "Reward Model Ensembles Help Mitigate Overoptimization").

An ensemble is several reward models scoring the same replies; each member's scores are first
normalised by the statistics saved with it (`reward_config.json`), so members of different scales
weigh alike, then combined per reply:

- `mean`: the members' mean;
- `min`: the worst case (Coste et al.'s WCO): a reply scores what its least impressed member says;
- `mean_minus_std`: the mean less `coef` times the members' standard deviation (over members,
  divided by M): replies the members disagree on are worth less. Coste et al.'s UWO subtracts the
  variance; the standard deviation is on the scores' own scale, so `coef` reads in score units.

Where an ensemble comes from: a list of reward-model folders, or one ensemble folder — the
reward-model stage's output with `ensemble: n` (`<run>/model/`, holding `ensemble.json` and
`member-<i>/`, each a reward model of its own) — or a mix of both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from common.data import Message
from common.rewards.scorer import RewardScorer, load_reward_scorer

COMBINES = ("mean", "min", "mean_minus_std")
ENSEMBLE_FILE = "ensemble.json"  # in an ensemble folder: {"members": ["member-0", …], …}


def combine_rewards(scores: torch.Tensor, how: str, coef: float = 1.0) -> torch.Tensor:
    """(M, B) normalised member scores → (B,) combined scores by `how` (see the module's doc)."""
    if how == "mean":
        return scores.mean(dim=0)
    if how == "min":
        return scores.min(dim=0).values
    if how == "mean_minus_std":
        return scores.mean(dim=0) - coef * scores.std(dim=0, correction=0)
    raise ValueError(f"reward_combine must be one of {', '.join(COMBINES)}, got {how!r}")


def is_ensemble_folder(path: str | Path) -> bool:
    return (Path(path) / ENSEMBLE_FILE).is_file()


def member_folders(spec: str | Sequence[str]) -> list[str]:
    """The reward-model folders `spec` names: one folder, an ensemble folder (its members, in order),
    or a list of either."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    out = []
    for s in specs:
        if is_ensemble_folder(s):
            meta = json.loads((Path(s) / ENSEMBLE_FILE).read_text())
            out += [str(Path(s) / name) for name in meta["members"]]
        else:
            out.append(s)
    return out


class EnsembleScorer:
    """The `RewardScorer` interface over several reward models: (prompts, responses) → the combined
    scores (B,). Its scores are always on the members' normalised scale (so `normalize` changes
    nothing, and its own mean/std are 0/1); after each call `last_members` holds the (M, B)
    normalised member scores, for logging the members' disagreement."""

    mean, std = 0.0, 1.0

    def __init__(self, members: Sequence[RewardScorer], how: str = "mean", coef: float = 1.0):
        if how not in COMBINES:
            raise ValueError(f"reward_combine must be one of {', '.join(COMBINES)}, got {how!r}")
        self.members, self.how, self.coef = list(members), how, coef
        self.last_members: torch.Tensor | None = None

    def __call__(self, prompts: Sequence[str | list[Message]], responses: Sequence[str], batch_size: int = 8,
                 normalize: bool = False) -> torch.Tensor:
        self.last_members = torch.stack([m(prompts, responses, batch_size=batch_size, normalize=True)
                                         for m in self.members])  # (M, B)
        return combine_rewards(self.last_members, self.how, self.coef)


def load_reward_models(spec: str | Sequence[str], how: str = "mean", coef: float = 1.0,
                       device: str | torch.device | None = None) -> RewardScorer | EnsembleScorer:
    """One folder → its `RewardScorer` (as before ensembles existed); several → an `EnsembleScorer`."""
    folders = member_folders(spec)
    if len(folders) == 1:
        return load_reward_scorer(folders[0], device=device)
    return EnsembleScorer([load_reward_scorer(f, device=device) for f in folders], how, coef)


def scorer_members(scorer) -> list[RewardScorer]:
    """The reward models inside a scorer: an ensemble's members, or the scorer itself."""
    return list(scorer.members) if isinstance(scorer, EnsembleScorer) else [scorer]
