"""PPO on a tiny local model: it learns a rule reward, and survives the batches that break others."""

from __future__ import annotations

import math

import pytest
import torch

from common.config import parse_args
from common.data.prompts import Prompt
from common.models import load_model_and_tokenizer
from ppo.config import PPOStageConfig
from ppo.models import build_critic
from ppo.trainer import PPOTrainer

PROMPTS = [Prompt([{"role": "user", "content": f"Say something about {w}."}], "general", None, "test")
           for w in ("cats", "rates", "contracts", "code", "health", "rain", "tea", "maps")]


def make_trainer(model_dir, score_fn, *overrides: str, seed: int = 0) -> PPOTrainer:
    cfg = parse_args(PPOStageConfig, [
        "--finetune", "full", "--prompts_per_step", "8", "--samples_per_prompt", "2", "--mini_batch_size", "8",
        "--max_new_tokens", "8", "--policy_lr", "1e-2", "--critic_lr", "3e-3", "--ppo_epochs", "4",
        "--missing_eos_penalty", "null", "--precision", "fp32", *overrides,
    ])
    torch.manual_seed(seed)
    policy, tokenizer = load_model_and_tokenizer(str(model_dir))
    critic = None
    if cfg.value_model == "separate" and cfg.uses_critic:
        critic = build_critic(str(model_dir), zero_head=True, freeze_layers=cfg.critic_freeze_layers)
    return PPOTrainer(cfg, policy, tokenizer, critic, score_fn)


# Each learning test's threshold: half the smallest gain measured over seeds 0–3 (bench/learning_tests.py,
# AVX-512 CPU without AMX, fp32; AMX machines compute fp32 products differently, so seeds stand in for
# machines). Measured minima: gae-separate +0.233, gae-policy_head +0.141, grpo +0.591, rloo +0.074,
# reinforce_pp +0.237, reinforce_baseline +0.089 — the unscaled group baselines move least.
LEARNED = {"gae-separate": 0.115, "gae-policy_head": 0.07, "grpo": 0.29, "rloo": 0.037, "reinforce_pp": 0.118,
           "reinforce_baseline": 0.044}


def gain(history: list[dict]) -> float:
    """How much the score rose: the mean of the last 10 steps minus the mean of the first 5."""
    first = sum(h["objective/scores"] for h in history[:5]) / 5
    return sum(h["objective/scores"] for h in history[-10:]) / 10 - first


def target_token_rate(targets: torch.Tensor):
    """Reward: the share of a response's tokens that are in `targets`."""
    def score(prompts, texts, exp):
        hits = torch.isin(exp.responses, targets).float() * exp.response_mask
        return hits.sum(dim=1) / exp.response_mask.sum(dim=1)
    return score


@pytest.mark.parametrize("value_model", ["separate", "policy_head"])
def test_ppo_raises_a_rule_reward_while_kl_stays_finite(tiny_model_dir, value_model):
    # a random policy emits one of these 64 of 512 tokens ~1/8 of the time: a learnable signal
    trainer = make_trainer(tiny_model_dir, target_token_rate(torch.arange(100, 164)), "--kl_coef", "0.05",
                           "--value_model", value_model)
    assert (trainer.critic is None) == (value_model == "policy_head")
    head = trainer.actor.module.value_head
    head_before = None if head is None else head.weight.detach().clone()
    before = {k: v.clone() for k, v in trainer.policy.state_dict().items()}
    history = [trainer.step(PROMPTS) for _ in range(40)]
    # half the smallest gain over seeds 0–3 on an AVX-512 CPU in fp32 (bench/learning_tests.py): separate
    # critic +0.23…+0.26, value head on the trunk (which the value loss also moves) +0.14…+0.17
    assert gain(history) > LEARNED[f"gae-{value_model}"], gain(history)
    assert all(torch.isfinite(torch.tensor(h["objective/kl"])) for h in history)
    assert all(math.isfinite(h["loss/policy_avg"]) for h in history)
    after = trainer.policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    if head is not None:  # the value head on the policy's trunk learned values
        assert not torch.equal(head_before, head.weight)
        assert math.isfinite(history[-1]["val/explained_variance"])


def constant(value: float):
    return lambda prompts, texts, exp: torch.full((len(texts),), value)


def assert_trains(stats: dict) -> None:
    for key in ("loss/policy_avg", "loss/value_avg", "objective/kl", "objective/entropy"):
        assert torch.isfinite(torch.tensor(stats[key])), (key, stats[key])


def shift_eos_logit(trainer: PPOTrainer, shift: float) -> None:
    """Add `shift` to the EOS logit in every forward pass (generation and training alike)."""
    bias = torch.zeros(len(trainer.tokenizer))
    bias[trainer.tokenizer.eos_token_id] = shift
    trainer.policy.get_output_embeddings().register_forward_hook(lambda module, args, out: out + bias)


def test_batch_where_every_response_ends_at_its_first_token(tiny_model_dir):
    trainer = make_trainer(tiny_model_dir, constant(1.0), "--missing_eos_penalty", "1.0")
    shift_eos_logit(trainer, 100.0)
    stats = trainer.step(PROMPTS[:4])
    assert stats["response_length"] == 1.0 and stats["eos_fraction"] == 1.0
    assert_trains(stats)


def test_batch_that_hits_the_length_limit_without_eos(tiny_model_dir):
    trainer = make_trainer(tiny_model_dir, constant(0.5), "--missing_eos_penalty", "1.0", "--max_new_tokens", "4")
    shift_eos_logit(trainer, -100.0)
    stats = trainer.step(PROMPTS[:4])
    assert stats["eos_fraction"] == 0.0 and stats["response_length"] == 4.0
    assert stats["objective/scores"] == pytest.approx(0.5 - 1.0)  # the missing-EOS penalty applied
    assert_trains(stats)


def test_constant_reward_batch(tiny_model_dir):
    trainer = make_trainer(tiny_model_dir, constant(2.0), "--kl_coef", "0")
    stats = trainer.step(PROMPTS[:4])
    assert_trains(stats)
    assert stats["objective/scores"] == pytest.approx(2.0)


def test_prompts_longer_than_the_budget_are_skipped_with_a_warning(tiny_model_dir, caplog):
    from common.data.prompts import drop_long_prompts

    _, tok = load_model_and_tokenizer(str(tiny_model_dir))
    long = Prompt([{"role": "user", "content": "word " * 500}], "general", None, "p.jsonl:7")
    kept = drop_long_prompts([PROMPTS[0], long], tok, max_tokens=64)
    assert kept == [PROMPTS[0]]
    assert "p.jsonl:7" in caplog.text


def test_domain_weights_decide_which_component_improves(tiny_model_dir, tmp_path):
    from common.rewards.mixer import RewardMixer, load_domains
    from ppo.scoring import MixedReward

    (tmp_path / "brief.yaml").write_text("name: brief\nweights: {accuracy: 0, diversity: 0, efficiency: 1}\ntoken_budget: 3\n")
    (tmp_path / "varied.yaml").write_text("name: varied\nweights: {accuracy: 0, diversity: 1, efficiency: 0}\ntoken_budget: 3\n")
    domains = load_domains(tmp_path)
    lengths = {}
    for name in ("brief", "varied"):
        prompts = [Prompt(p.messages, name, None, "test") for p in PROMPTS]
        trainer = make_trainer(tiny_model_dir, MixedReward(RewardMixer(domains), None), "--kl_coef", "0.01")
        shift_eos_logit(trainer, 4.0)  # EOS likely enough that lengths vary from the start
        history = [trainer.step(prompts) for _ in range(25)]
        lengths[name] = [h["response_length"] for h in history]
    first, last = (lambda xs: sum(xs[:5]) / 5), (lambda xs: sum(xs[-5:]) / 5)
    assert last(lengths["brief"]) < first(lengths["brief"]) - 0.5, lengths["brief"]
    assert last(lengths["brief"]) < last(lengths["varied"]) - 0.5, lengths


def test_prefix_cache_is_exact(tiny_model_dir):
    """LoRA on the top layer and a critic with its lower layer frozen: the cached lower-layer
    output gives the same log-probs, values and training figures as full forward passes."""
    common = ("--finetune", "lora", "--lora.layers", "[1]", "--critic_freeze_layers", "1", "--policy_lr", "1e-3")
    runs = {}
    for cache in ("true", "false"):
        trainer = make_trainer(tiny_model_dir, target_token_rate(torch.arange(100, 164)), *common, "--prefix_cache", cache)
        assert (trainer.policy_k, trainer.critic_k) == ((1, 1) if cache == "true" else (0, 0))
        torch.manual_seed(1)
        runs[cache] = [trainer.step(PROMPTS) for _ in range(3)]
    for with_cache, without in zip(runs["true"], runs["false"]):
        for key in ("objective/scores", "objective/kl", "loss/policy_avg", "loss/value_avg", "objective/entropy",
                    "policy/approxkl_avg"):
            assert with_cache[key] == pytest.approx(without[key], rel=1e-4, abs=1e-6), key


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_gradient_checkpointing_changes_memory_not_the_maths(tiny_model_dir, finetune):
    """Recomputing activations in the backward pass gives the same training figures."""
    common = ("--finetune", finetune, "--lora.layers", "[1]", "--critic_freeze_layers", "1", "--policy_lr", "1e-3")
    runs = {}
    for ckpt in ("true", "false"):
        trainer = make_trainer(tiny_model_dir, target_token_rate(torch.arange(100, 164)), *common,
                               "--gradient_checkpointing", ckpt)
        assert trainer.policy.is_activation_checkpointing == (ckpt == "true")
        torch.manual_seed(1)
        runs[ckpt] = [trainer.step(PROMPTS) for _ in range(2)]
    for on, off in zip(runs["true"], runs["false"]):
        for key in ("objective/scores", "objective/kl", "loss/policy_avg", "loss/value_avg", "policy/approxkl_avg"):
            assert on[key] == pytest.approx(off[key], rel=1e-4, abs=1e-6), key


def test_top_k_zero_samples_from_the_whole_vocabulary(tiny_model_dir):
    """top_k = 0 means no truncation (transformers would otherwise apply its default top-50)."""
    trainer = make_trainer(tiny_model_dir, constant(0.0), "--top_k", "0")
    exp = trainer.rollout(PROMPTS)
    logits, _ = trainer._actor(exp)  # (B, T, V) the distribution each token was sampled from
    chosen = logits.gather(-1, exp.responses.unsqueeze(-1))  # (B, T, 1)
    ranks = (logits > chosen).sum(-1)[exp.response_mask.bool()]  # 0 = the most likely token
    assert ranks.max() >= 50, "every sampled token was in the top 50"


def test_compiled_generation_matches_the_default_path_and_compiles_once(tiny_model_dir):
    """compile_generation: true — static KV cache, prompts padded to a multiple of 64, a compiled
    decoding step. Greedy (top_k = 1) responses equal the default path's, and a second batch with
    other prompt lengths reuses the compiled step instead of compiling again."""
    import torch._dynamo

    longer = [Prompt([{"role": "user", "content": f"Tell me, in a few words, something about {w} please."}], "general",
                     None, "test")
              for w in ("cats", "rates", "contracts", "code", "health", "rain", "tea", "maps")]
    torch._dynamo.reset()
    responses = {}
    for mode in ("false", "true"):
        # the compiled run trains under bf16 autocast but decodes in the weights' dtype (fp32): the
        # same greedy tokens, and no static-cache dtype clash (RoPE makes keys fp32, values bf16)
        precision = "bf16" if mode == "true" else "fp32"
        trainer = make_trainer(tiny_model_dir, constant(0.0), "--top_k", "1", "--compile_generation", mode,
                               "--precision", precision)
        assert bool(trainer.generate_kwargs) == (mode == "true")
        exps = [trainer.rollout(batch) for batch in (PROMPTS, longer)]
        if mode == "true":
            assert all(exp.prompt_len % 64 == 0 for exp in exps)
            graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
            assert graphs >= 1
            trainer.rollout(PROMPTS)
            assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs  # no recompilation
            stats = trainer.step(PROMPTS)  # and PPO trains on the padded batch
            assert_trains(stats)
        responses[mode] = [exp.responses * exp.response_mask.long() for exp in exps]
    for off, on in zip(responses["false"], responses["true"]):
        assert torch.equal(off, on)


def test_compiled_generation_under_zero3_is_a_config_error(tiny_model_dir):
    from common.config import ConfigError

    cfg = parse_args(PPOStageConfig, ["--compile_generation", "true", "--deepspeed", "configs/deepspeed/zero3.json"])
    policy, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    with pytest.raises(ConfigError, match="compile_generation.*ZeRO-3.*zero3.json"):
        PPOTrainer(cfg, policy, tokenizer, None, constant(0.0), ds={"zero_optimization": {"stage": 3}})


@pytest.mark.parametrize("estimator", ["k2", "k3"])
def test_kl_as_a_loss_term_pulls_the_policy_towards_the_reference(tiny_model_dir, estimator):
    # the rule reward pushes the policy away from the reference; the same run with a KL loss term
    # (kl_in_reward: false) must end closer to it than one without any KL
    def final_kl(coef: str) -> float:
        trainer = make_trainer(tiny_model_dir, target_token_rate(torch.arange(100, 164)), "--kl_in_reward", "false",
                               "--kl_estimator", estimator, "--kl_coef", coef)
        history = [trainer.step(PROMPTS) for _ in range(15)]
        return sum(h["objective/kl"] for h in history[-5:]) / 5

    free, pulled = final_kl("0"), final_kl("1.0")
    assert pulled < 0.7 * free, (free, pulled)


@pytest.mark.parametrize("estimator", ["grpo", "rloo", "reinforce_pp", "reinforce_baseline"])
def test_critic_free_estimators_raise_the_rule_reward(tiny_model_dir, estimator):
    trainer = make_trainer(tiny_model_dir, target_token_rate(torch.arange(100, 164)), "--kl_coef", "0.05",
                           "--advantage_estimator", estimator, "--samples_per_prompt", "4", "--prompts_per_step", "4",
                           "--mini_batch_size", "16")
    assert trainer.critic is None and trainer.actor.module.value_head is None
    history = [trainer.step(PROMPTS[:4]) for _ in range(40)]
    assert gain(history) > LEARNED[estimator], (estimator, gain(history))
    assert "loss/value_avg" not in history[-1] and all(math.isfinite(h["loss/policy_avg"]) for h in history)


def test_grpo_on_constraints_raises_the_pass_rate(tiny_model_dir):
    """GRPO on rules alone (the mixer's constraints component): the share of replies following every
    constraint rises (measured over seeds 0 and 1 on an AVX-512 CPU, fp32: 0.65 → 0.87 and 0.68 →
    0.92 as the fraction of constraints met; the threshold sits well inside that)."""
    from common.rewards.mixer import RewardMixer, load_domains
    from common.rewards.verifiers import constraint_results
    from ppo.scoring import MixedReward

    from helpers.stages import REPO

    rules = [{"type": "lowercase"}, {"type": "no_digits"}]
    prompts = [Prompt(p.messages, "general", None, "test", constraints=rules) for p in PROMPTS[:4]]
    reward = MixedReward(RewardMixer(load_domains(REPO / "configs/domains"), components=("constraints",)), None)
    trainer = make_trainer(tiny_model_dir, reward, "--kl_coef", "0.05", "--advantage_estimator", "grpo",
                           "--samples_per_prompt", "8", "--prompts_per_step", "4", "--mini_batch_size", "32")
    passed = []
    for _ in range(30):
        trainer.step(prompts)
        passed.append(sum(all(constraint_results(s["response"], rules)) for s in trainer.last_samples) / 32)
    first, last = sum(passed[:5]) / 5, sum(passed[-10:]) / 10
    assert last > first + 0.12, (first, last)
