"""`python -m ppo ARGS...` with the reward replaced by a rule a tiny random policy can learn:
the share of a response's tokens whose ids lie in 100–163 (64 of the 512; ~1/8 by chance).

Usage: python tests/helpers/ppo_rule_reward.py --config ... [--key value ...]
(also as the script of `deepspeed --num_gpus 2`, to train the same rule on 2 ranks).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

import ppo.__main__ as stage  # noqa: E402
import ppo.run  # noqa: E402
from common.stage import run_stage  # noqa: E402

TARGETS = torch.arange(100, 164)


class TargetTokenRate:
    def __init__(self, mixer, scorer, gold=None):
        self.last_log: dict[str, float] = {}

    def __call__(self, prompts, texts, exp) -> torch.Tensor:  # (B,)
        hits = torch.isin(exp.responses, TARGETS.to(exp.responses.device)).float() * exp.response_mask
        return hits.sum(dim=1) / exp.response_mask.sum(dim=1)


ppo.run.MixedReward = TargetTokenRate
sys.exit(run_stage(stage.main))
