"""Gold-reward early stopping (Gao et al. 2022, "Scaling Laws for Reward Model Overoptimization").

Optimising a proxy reward model raises the proxy score for ever, while a held-out gold reward
rises, peaks and falls. PPO can score each step's replies with a gold reward model it does not
optimise (`gold_reward_model`) and, with `gold_stop: {patience: k, min_delta: d}`, stop once

    k steps have passed since the best gold score, the mean gold score of the last k steps is
    more than d under that best, and the mean proxy score of the last k steps is above the proxy's
    at the best step — the gold fell while the proxy rose;

the best-by-gold policy, saved as `<run>/gold-best/` at each new best, then becomes the final
model. The proxy is the optimised reward model's normalised score (`proxy/score`), or the mixed
reward (`objective/scores`) for a run without a reward model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ppo.config import GoldStop

GOLD_BEST = "gold-best"  # in the run folder: the best-by-gold policy so far
GOLD_FILE = "gold.json"  # in the run folder: the best step, whether and when the run stopped, the curves


def gold_decision(gold: list[float], proxy: list[float], patience: int, min_delta: float) -> tuple[int, bool]:
    """(index of the best gold score — the first if tied —, whether to stop now) for the scores so far."""
    best = max(range(len(gold)), key=gold.__getitem__)
    if len(gold) - 1 - best < patience:
        return best, False
    recent_gold = sum(gold[-patience:]) / patience
    recent_proxy = sum(proxy[-patience:]) / patience
    return best, recent_gold < gold[best] - min_delta and recent_proxy > proxy[best]


@dataclass
class GoldCurve:
    """The gold and proxy score of every step so far (saved in checkpoints: a resumed run goes on)."""

    steps: list[int] = field(default_factory=list)
    gold: list[float] = field(default_factory=list)
    proxy: list[float] = field(default_factory=list)

    def observe(self, step: int, gold: float, proxy: float, rule: GoldStop | None) -> tuple[bool, bool]:
        """Add a step → (it is the new best, stop now by `rule`); never stops without a rule."""
        self.steps.append(step)
        self.gold.append(gold)
        self.proxy.append(proxy)
        return self.best == len(self.gold) - 1, rule is not None and self.should_stop(rule)

    def should_stop(self, rule: GoldStop) -> bool:
        return gold_decision(self.gold, self.proxy, rule.patience, rule.min_delta)[1]

    @property
    def best(self) -> int:
        """Index of the best gold score so far (the first if tied)."""
        return max(range(len(self.gold)), key=self.gold.__getitem__)

    @property
    def best_step(self) -> int:
        return self.steps[self.best]

    def state_dict(self) -> dict:
        return {"steps": list(self.steps), "gold": list(self.gold), "proxy": list(self.proxy)}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.gold, self.proxy = list(state["steps"]), list(state["gold"]), list(state["proxy"])

    def record(self, stopped_at: int | None) -> dict:
        """gold.json: the best step, where the run stopped (None: it ran to the end), the curves."""
        i = self.best
        return {"best_step": self.best_step, "best_gold": self.gold[i], "proxy_at_best": self.proxy[i],
                "stopped_at": stopped_at, "steps": self.steps, "gold": self.gold, "proxy": self.proxy}
