"""The estimator options wired into PPOTrainer on a tiny model: REINFORCE++-baseline, Dr GRPO's loss
aggregation, clip-higher, GSPO's sequence ratio, DAPO's dynamic sampling and overlong penalty."""

from __future__ import annotations

import math

import pytest
import torch

from common.config import ConfigError, parse_args
from common.data.prompts import Prompt
from common.models import load_model_and_tokenizer
from ppo.config import PPOStageConfig
from ppo.trainer import PPOTrainer

PROMPTS = [Prompt([{"role": "user", "content": f"Say something about {w}."}], "general", None, "test")
           for w in ("cats", "rates", "contracts", "code")]


def trainer(model_dir, score_fn, *overrides: str) -> PPOTrainer:
    cfg = parse_args(PPOStageConfig, ["--finetune", "full", "--prompts_per_step", "2", "--samples_per_prompt", "2",
                                      "--mini_batch_size", "4", "--max_new_tokens", "6", "--ppo_epochs", "1",
                                      "--missing_eos_penalty", "null", "--precision", "fp32", *overrides])
    torch.manual_seed(0)
    policy, tokenizer = load_model_and_tokenizer(str(model_dir))
    return PPOTrainer(cfg, policy, tokenizer, None, score_fn)


def length_score(prompts, texts, exp):
    return exp.response_mask.sum(dim=1).float()


@pytest.mark.parametrize("options", [
    ("--advantage_estimator", "reinforce_baseline"),
    ("--advantage_estimator", "grpo", "--grpo_scale", "false", "--loss_agg_mode", "seq-mean-token-sum-norm"),
    ("--advantage_estimator", "grpo", "--cliprange_high", "0.28", "--loss_agg_mode", "seq-mean-token-mean"),
    ("--advantage_estimator", "grpo", "--policy_ratio", "sequence", "--cliprange", "3e-4", "--cliprange_high", "4e-4"),
    ("--advantage_estimator", "rloo", "--kl_in_reward", "false", "--kl_estimator", "k3"),
])
def test_each_option_trains_and_logs_finite_figures(options, tiny_model_dir):
    t = trainer(tiny_model_dir, length_score, *options)
    before = {k: v.clone() for k, v in t.policy.state_dict().items()}
    stats = t.step(PROMPTS[:2])
    assert all(torch.isfinite(torch.tensor(stats[k])) for k in ("loss/policy_avg", "objective/kl", "policy/approxkl_avg"))
    assert any(not torch.equal(before[k], v) for k, v in t.policy.state_dict().items())


def test_reinforce_estimators_default_to_no_discount():
    for estimator, gamma in (("gae", 0.99), ("reinforce_pp", 1.0), ("reinforce_baseline", 1.0), ("grpo", 1.0)):
        assert parse_args(PPOStageConfig, ["--advantage_estimator", estimator, "--samples_per_prompt", "2"]).gamma == gamma


def test_dynamic_sampling_keeps_the_groups_whose_scores_differ(tiny_model_dir):
    # a pool of 2 × 2 prompts: groups 0 and 2 uniform, 1 and 3 informative → groups 1 and 3 are kept
    def score(prompts, texts, exp):
        return torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5, 2.0, 0.0])

    t = trainer(tiny_model_dir, score, "--advantage_estimator", "grpo", "--dynamic_sampling", "2")
    exp = t.rollout([p for p in PROMPTS for _ in range(2)])
    t.score(exp, [p for p in PROMPTS for _ in range(2)])
    assert t.informative(exp).tolist() == [2, 3, 6, 7]
    stats = t.step(PROMPTS)
    assert stats["dapo/kept_groups"] == 2 and stats["dapo/informative_share"] == 0.5


def test_dynamic_sampling_with_no_informative_group_keeps_one(tiny_model_dir):
    t = trainer(tiny_model_dir, lambda p, texts, e: torch.zeros(len(texts)), "--advantage_estimator", "grpo",
                "--dynamic_sampling", "2")
    stats = t.step(PROMPTS)
    assert stats["dapo/kept_groups"] == 1 and stats["dapo/informative_share"] == 0


def test_overlong_penalty_lowers_the_score_of_replies_near_the_limit(tiny_model_dir):
    t = trainer(tiny_model_dir, lambda p, texts, e: torch.zeros(len(texts)), "--advantage_estimator", "grpo",
                "--overlong_buffer", "3")
    prompts = [p for p in PROMPTS[:2] for _ in range(2)]
    exp = t.rollout(prompts)
    t.score(exp, prompts)
    lengths = exp.response_mask.sum(dim=1)
    expected = ((6 - 3 - lengths) / 3).clamp(min=-1, max=0)
    assert torch.allclose(exp.scores, expected)


@pytest.mark.parametrize("bad, message", [
    (("--dynamic_sampling", "2"), "dynamic_sampling compares a prompt's samples"),
    (("--advantage_estimator", "grpo", "--overlong_buffer", "100"), "overlong_buffer must be in"),
])
def test_bad_options_are_config_errors(bad, message):
    with pytest.raises(ConfigError, match=message):
        parse_args(PPOStageConfig, ["--samples_per_prompt", "2", *bad])


@pytest.mark.parametrize("estimator", ["grpo", "rloo"])
def test_the_on_policy_shortcut_is_exact(estimator, tiny_model_dir):
    """One epoch, one mini-batch: log π_old taken from the update's own pass (detached) instead of a
    pass of its own gives the same update, figures and weights — one forward pass less."""
    runs = {}
    for shortcut in ("true", "false"):
        t = trainer(tiny_model_dir, length_score, "--advantage_estimator", estimator, "--kl_in_reward", "false",
                    "--kl_estimator", "k3", "--on_policy_shortcut", shortcut)
        assert t.old_from_update == (shortcut == "true")
        torch.manual_seed(1)
        stats = t.step(PROMPTS[:2])
        runs[shortcut] = stats, {k: v.clone() for k, v in t.policy.state_dict().items()}
    (fast, fast_w), (slow, slow_w) = runs["true"], runs["false"]
    for key in ("loss/policy_avg", "objective/kl", "objective/entropy", "objective/scores", "val/ratio", "response_length"):
        assert fast[key] == pytest.approx(slow[key], abs=1e-5), key
    assert fast["val/ratio"] == 1.0
    assert all(torch.allclose(fast_w[k], slow_w[k], atol=1e-6) for k in fast_w)


def test_the_shortcut_needs_one_optimizer_step_per_batch(tiny_model_dir):
    assert trainer(tiny_model_dir, length_score, "--advantage_estimator", "grpo").old_from_update
    # several optimizer steps per batch: log π_old needs its own pass again
    assert not trainer(tiny_model_dir, length_score, "--advantage_estimator", "grpo", "--ppo_epochs", "2").old_from_update
    assert not trainer(tiny_model_dir, length_score, "--advantage_estimator", "grpo", "--mini_batch_size", "2").old_from_update
    stats = trainer(tiny_model_dir, length_score, "--advantage_estimator", "grpo", "--kl_coef", "0").step(PROMPTS[:2])
    assert math.isfinite(stats["objective/kl"])  # the KL is still measured at β = 0
