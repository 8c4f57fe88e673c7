"""The closed loop's options: one dataclass, from `configs/loop/*.yaml` + command line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import param
from common.pipeline import default_model


@dataclass
class LoopConfig:
    """One round of the loop (`round`), and what every round needs."""

    round: int = param(-1, help="the round to run: 0 = choose round 1's tasks from the starting policy; n ≥ 1 = "
                       "train on the labels of rounds 1..n and choose round n+1's tasks")
    root: str = param("runs/loop", help="where each round's artefacts go: <root>/round-<n>/")
    db: str = param("runs/annotation/labels.db", help="the annotation app's database (file or URL)")
    policy: str = param(default_model("sft"), help="the policy round 1 starts from")
    reward_model: str = param(default_model("reward_model"), help="the reward model round 1 starts from")
    prompts: list[str] = param([], help="prompt files (JSONL: prompt, domain) the candidates are sampled for")
    k: int = param(4, help="candidates per prompt")
    max_new_tokens: int = param(128, help="tokens per candidate")
    budget: int = param(12, help="tasks per round (the prompts the reward model is least sure of)")
    select: Literal["random", "margin", "ensemble"] = param(
        "margin", help="how tasks are chosen: margin (the reward model's smallest gap; measured best, "
        "bench/active_labels.py), random, or ensemble (its members' disagreement: reward_model an ensemble folder, "
        "and rm_args [--ensemble, 'n'] so every round trains one)")
    floor: float | None = param(0.75, help="leave out annotators under this agreement (export --floor); null = keep all")
    rm_recipe: str = param("configs/reward_model/default.yaml", help="reward-model recipe each round trains with")
    rm_args: list[str] = param([], help="extra reward-model overrides, e.g. [--max_steps, '60']")
    ppo_recipe: str = param("configs/ppo/default.yaml", help="PPO recipe each round trains with")
    ppo_args: list[str] = param([], help="extra PPO overrides")
    eval_recipe: str = param("configs/evaluation/default.yaml", help="evaluation recipe (its policies are replaced "
                             "by the previous and the new policy)")
    eval_args: list[str] = param([], help="extra evaluation overrides")
    seed: int = param(0, help="sampling and selection seed (each round adds its number)")

    def __post_init__(self):
        if self.round < 0:
            raise ValueError("round must be given: --round 0 (first tasks), 1, 2, …")
        if not self.prompts:
            raise ValueError("prompts: name at least one prompt file to sample candidates for")
        if self.budget < 1:
            raise ValueError(f"budget must be ≥ 1, got {self.budget}")
        if self.floor is not None and not 0 < self.floor <= 1:
            raise ValueError(f"floor must lie in (0, 1] (or null), got {self.floor}")
