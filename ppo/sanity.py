"""Before PPO trusts its reward model: the model's sanity suite (`common/rewards/sanity.py`).

The figures come from each reward-model folder's `sanity.json` (the reward-model stage writes it;
`python -m reward_model.sanity --save` adds it to an older model); when a folder has none, the suite
runs here on this run's prompts that carry a reference answer (the good reply), scored by the reward
model PPO will optimise (an ensemble's combined score). A kind under 80% is a warning; with
`reward_sanity_floor` set, a kind under the floor refuses the run in one line, before anything is
written.
"""

from __future__ import annotations

import logging

from common.config import ConfigError
from common.data.prompts import Prompt
from common.rewards.sanity import WARN_BELOW, describe_failures, failing, run_suite, saved_figures

log = logging.getLogger("ppo")
OWN_PROMPTS = "this run's prompts, reference answers"


def sanity_figures(spec: str | list[str], scorer, prompts: list[Prompt]) -> dict[str, dict]:
    """{where the figures are from: figures}: every folder's saved figures, or, when one lacks them,
    the suite run on `prompts` with a reference (at least 2); {} when neither is there."""
    saved = saved_figures(spec)
    if all(saved.values()):
        return saved
    with_reference = [p for p in prompts if p.reference]
    if len(with_reference) < 2:
        return {}
    return {OWN_PROMPTS: run_suite(scorer, [p.messages for p in with_reference], [p.reference for p in with_reference],
                                   OWN_PROMPTS)}


def check_reward_sanity(spec: str | list[str], scorer, prompts: list[Prompt], floor: float | None) -> dict[str, dict]:
    """Warn about the kinds the reward model fails (under 80%, or under `floor`); with a floor, raise
    ConfigError naming them. Returns the figures used, for the run folder."""
    figures = sanity_figures(spec, scorer, prompts)
    if not figures:
        message = (f"reward model {spec} has no sanity figures (no sanity.json) and fewer than 2 prompts here have a "
                   "reference answer: run python -m reward_model.sanity --model FOLDER --data FILE --save")
        if floor is not None:
            raise ConfigError(f"reward_sanity_floor {floor}: {message}")
        log.warning("%s", message)
        return {}
    problems = [f"{where}: {describe_failures(bad)}" for where, f in figures.items()
                if (bad := failing(f, floor if floor is not None else WARN_BELOW))]
    if problems and floor is not None:
        raise ConfigError(f"reward_sanity_floor {floor}: the reward model prefers the bad reply too often — "
                          f"{'; '.join(problems)} (pass rates of its sanity suite; docs/reward_model.md)")
    for problem in problems:
        log.warning("the reward model fails its sanity suite (pass rates under %.0f%%) — %s: PPO may learn to "
                    "exploit it; set reward_sanity_floor to refuse such a model", 100 * WARN_BELOW, problem)
    return figures
