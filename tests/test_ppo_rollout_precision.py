"""Rollouts from a bf16 copy of the policy, corrected by importance weights π_old / π_rollout."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from common.config import ConfigError, parse_args
from common.models import load_model_and_tokenizer
from ppo.config import PPOStageConfig
from ppo.losses import logprobs_of, policy_loss, rollout_correction_weights
from ppo.trainer import PPOTrainer
from tests.test_ppo_trainer import PROMPTS, assert_trains, constant, gain, make_trainer, target_token_rate

LOG = torch.log


# ---------------------------------------------------------------- the weights, by hand

def two_tokens():
    """π_old = (½, ¼), π_rollout = (¼, ½) on two real tokens, a third token is padding: w = (2, ½)."""
    old = LOG(torch.tensor([[0.5, 0.25, 0.9]]))
    rollout = LOG(torch.tensor([[0.25, 0.5, 0.1]]))
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    return old, rollout, mask


@pytest.mark.parametrize("mode, expected, capped", [
    ("token_truncate", [1.5, 0.5, 0.0], 0.5),
    ("token_mask", [0.0, 0.5, 0.0], 0.5),
    ("sequence_truncate", [1.0, 1.0, 0.0], 0.0),  # the reply's product 2 · ½ = 1
    ("sequence_mask", [1.0, 1.0, 0.0], 0.0),
])
def test_rollout_correction_weights_by_hand(mode, expected, capped):
    old, rollout, mask = two_tokens()
    weights, stats = rollout_correction_weights(old, rollout, mask, mode, cap=1.5)
    assert weights.tolist()[0] == pytest.approx(expected)
    assert stats["capped"].item() == pytest.approx(capped)
    assert stats["weight"].item() == pytest.approx(sum(expected) / 2)
    # KL(π_rollout ‖ π_old) per token, k3 = w − 1 − log w: (1 − log 2) + (−½ + log 2) = ½ over 2 tokens
    assert stats["mismatch_kl"].item() == pytest.approx(0.25)


def test_a_reply_far_off_is_capped_or_dropped_whole():
    """Sequence modes: each token's w = 1.5 → the reply's 1.5³ = 3.375 > C = 3: truncated to 3 on every
    token, or the reply dropped; a padding token never counts."""
    old = torch.full((1, 4), math.log(0.6))
    rollout = torch.full((1, 4), math.log(0.4))
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    truncated, stats = rollout_correction_weights(old, rollout, mask, "sequence_truncate", cap=3.0)
    assert truncated.tolist()[0] == pytest.approx([3.0, 3.0, 3.0, 0.0])
    assert stats["capped"].item() == 1.0
    dropped, _ = rollout_correction_weights(old, rollout, mask, "sequence_mask", cap=3.0)
    assert dropped.tolist()[0] == [0.0, 0.0, 0.0, 0.0]
    kept, _ = rollout_correction_weights(old, rollout, mask, "sequence_mask", cap=4.0)
    assert kept.tolist()[0] == pytest.approx([3.375, 3.375, 3.375, 0.0])
    with pytest.raises(ValueError, match="cap must be ≥ 1"):
        rollout_correction_weights(old, rollout, mask, "token_truncate", cap=0.5)


def test_weights_scale_each_tokens_policy_loss():
    """Token-mean of w_t · max(−A·ρ, −A·clip(ρ)): with ρ = 1 the loss is −mean(w·A)."""
    logp = torch.zeros(1, 3)
    adv = torch.tensor([[1.0, 2.0, 4.0]])
    mask = torch.ones(1, 3)
    plain, _ = policy_loss(logp, logp, adv, mask, 0.2)
    assert plain.item() == pytest.approx(-7 / 3)
    weighted, _ = policy_loss(logp, logp, adv, mask, 0.2, weights=torch.tensor([[1.0, 0.5, 0.0]]))
    assert weighted.item() == pytest.approx(-(1 + 1) / 3)
    same, _ = policy_loss(logp, logp, adv, mask, 0.2, weights=torch.ones(1, 3))
    assert same.item() == pytest.approx(plain.item())


# ---------------------------------------------------------------- the trainer

@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_the_bf16_sampler_follows_the_trained_weights(tiny_model_dir, finetune):
    """After an update the sampler's weights are the trained (merged) weights rounded to bf16, its
    log-probabilities are π_old's up to bf16 rounding, and the correction's figures are logged."""
    trainer = make_trainer(tiny_model_dir, target_token_rate(torch.arange(100, 164)), "--finetune", finetune,
                           "--lora.layers", "[1]", "--policy_lr", "1e-2", "--rollout_precision", "bf16")
    assert next(trainer.rollout_policy.parameters()).dtype == torch.bfloat16
    for _ in range(2):
        stats = trainer.step(PROMPTS)
    trainer._refresh_rollout_policy()
    if finetune == "lora":  # the live model stays unmerged; the copy holds W + ΔW
        layer = trainer.policy.base_model.model.model.layers[1].self_attn.q_proj
        merged = layer.get_base_layer().weight + layer.get_delta_weight("default")
        assert not torch.equal(merged, layer.get_base_layer().weight)  # the adapter moved
        sampled = trainer.rollout_policy.model.layers[1].self_attn.q_proj.weight
    else:
        merged = trainer.policy.model.layers[1].mlp.down_proj.weight
        sampled = trainer.rollout_policy.model.layers[1].mlp.down_proj.weight
    assert torch.equal(sampled, merged.detach().to(torch.bfloat16))
    exp = trainer.rollout(PROMPTS)
    assert exp.rollout_logprobs is not None and exp.rollout_logprobs.shape == exp.responses.shape
    with torch.no_grad():  # the copy, read back in fp32, is the trained function (bf16 weight rounding aside)
        ids = trainer._inputs(exp, slice(None))
        live_logits = trainer.policy(**ids).logits
        copy_logits = copy.deepcopy(trainer.rollout_policy).float()(**ids).logits
    assert (live_logits - copy_logits).abs().max() < 0.05
    with torch.no_grad():
        trainer._prefixes(exp)  # the frozen layers' output, as the score phase computes it
        logits, _ = trainer._actor(exp)
    old = logprobs_of(logits, exp.responses) * exp.response_mask
    gap = (old - exp.rollout_logprobs).abs()[exp.response_mask.bool()]
    assert 0 < gap.mean() < 0.01 and gap.max() < 0.05, gap  # bf16 rounding (measured: mean 8e-4–1e-3, max 3e-3–5e-3)
    for key in ("rollout/weight", "rollout/capped", "rollout/mismatch_kl"):
        assert math.isfinite(stats[key]), key
    assert 0.9 < stats["rollout/weight"] < 1.1 and stats["rollout/mismatch_kl"] < 0.01


def test_the_default_sampler_logs_no_correction(tiny_model_dir):
    trainer = make_trainer(tiny_model_dir, constant(1.0))
    assert trainer.rollout_policy is None
    exp = trainer.rollout(PROMPTS[:2])
    assert exp.rollout_logprobs is None
    assert not any(key.startswith("rollout/") for key in trainer.step(PROMPTS[:2]))


def test_ppo_with_bf16_rollouts_raises_a_rule_reward(tiny_model_dir):
    """The learning test of test_ppo_trainer (separate critic) with the sampler in bf16 and
    token-level truncated importance sampling. Gains over seeds 0–3 (fp32 training, AVX-512 CPU
    without AMX): +0.261, +0.248, +0.301, +0.162 (fp32 sampler: +0.245, +0.233, +0.245, +0.262);
    threshold half the smallest, as for the others."""
    trainer = make_trainer(tiny_model_dir, target_token_rate(torch.arange(100, 164)), "--kl_coef", "0.05",
                           "--rollout_precision", "bf16")
    history = [trainer.step(PROMPTS) for _ in range(40)]
    assert gain(history) > 0.081, gain(history)
    assert all(math.isfinite(h["objective/kl"]) for h in history)


def test_bad_rollout_settings_are_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="qlora.*rollout_precision: same"):
        parse_args(PPOStageConfig, ["--finetune", "qlora", "--rollout_precision", "bf16"])
    with pytest.raises(ValueError, match="rollout_correction_cap must be ≥ 1"):
        parse_args(PPOStageConfig, ["--rollout_correction_cap", "0.5"])
    with pytest.raises(ConfigError, match="unknown|rollout_precision"):
        parse_args(PPOStageConfig, ["--rollout_precision", "int4"])
    cfg = parse_args(PPOStageConfig, ["--rollout_precision", "bf16", "--deepspeed", "configs/deepspeed/zero3.json"])
    policy, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    with pytest.raises(ConfigError, match="rollout_precision.*ZeRO-3.*zero3.json"):
        PPOTrainer(cfg, policy, tokenizer, None, constant(0.0), ds={"zero_optimization": {"stage": 3}})


def test_shared_prefill_decodes_what_separate_prompt_passes_decode(tiny_model_dir):
    """Each prompt's pass once, its KV cache repeated for its samples: greedy replies equal the
    default path's, token for token, and PPO trains on them."""
    replies = {}
    for shared in ("true", "false"):
        trainer = make_trainer(tiny_model_dir, constant(0.0), "--top_k", "1", "--shared_prefill", shared)
        batch = [p for p in PROMPTS for _ in range(2)]
        shapes = []  # every (rows, positions) the embedding sees
        hook = trainer.policy.get_input_embeddings().register_forward_hook(
            lambda m, a, o, seen=shapes: seen.append(tuple(a[0].shape)))
        exp = trainer.rollout(batch)
        hook.remove()
        prompt_pass = (8, exp.prompt_len - 1) if shared == "true" else (16, exp.prompt_len)  # 8 prompts × 2 samples
        assert shapes[0] == prompt_pass and all(rows == 16 and n == 1 for rows, n in shapes[1 if shared == "false" else 2:])
        replies[shared] = exp.responses * exp.response_mask.long()
        if shared == "true":
            assert_trains(trainer.step(PROMPTS))
    assert torch.equal(replies["true"], replies["false"])
