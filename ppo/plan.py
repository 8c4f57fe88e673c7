"""Memory plan of the PPO stage (common/planning/formulas.py) — every model one rank holds, and its two
phases: generating a rollout batch (KV cache) and training on mini-batches (activations).

    policy      LoRA (reference = adapters off) or full (reference = a frozen copy); with
                `rollout_precision: bf16` also the sampler, a whole bf16 copy
    critic      GAE only: a separate model (initialised from the reward model; its lowest
                `critic_freeze_layers` frozen) or a value head on the policy
    reward      the reward model, frozen (none with rule-based rewards); an ensemble's every member,
                and the gold reward model's, frozen too
    generate    B = prompts_per_step × samples_per_prompt / N replies: the KV cache of
                (prompt + new) tokens
    score       π_old, π_ref (and V) without gradients, a mini-batch at a time
    train       mini_batch_size / N replies through policy (and critic) with gradients; the
                head's logits only on response positions
"""

from __future__ import annotations

from common.planning.formulas import (
    Plan,
    Row,
    Setup,
    decode_bytes,
    frozen_model,
    kv_cache_bytes,
    local_share,
    logits_bytes,
    longest_prompt_tokens,
    policy_and_reference,
    resolve_arch,
    trained_model,
    training_phase,
)
from common.rewards.ensemble import member_folders
from ppo.config import PPOStageConfig


def plan(cfg: PPOStageConfig, setup: Setup) -> Plan:
    arch = resolve_arch(cfg.policy, "policy")
    rows, first = policy_and_reference(arch, cfg.finetune, cfg.lora, setup)
    critic_arch = critic_first = None
    proxy = member_folders(cfg.reward_model) if cfg.reward_model else []
    gold = member_folders(cfg.gold_reward_model) if cfg.gold_reward_model else []
    if cfg.uses_critic and cfg.value_model == "separate":
        spec = cfg.critic or (proxy[0] if proxy else cfg.policy)
        critic_arch = resolve_arch(spec, "critic")
        critic, critic_first = trained_model("critic", critic_arch, "full", None, setup, classifier=True,
                                             freeze_layers=cfg.critic_freeze_layers)
        rows.append(critic)
    elif cfg.uses_critic:
        rows[0].trainable += arch.hidden + 1
    if cfg.rollout_precision == "bf16":  # the sampler: a whole bf16 copy of the policy (never ZeRO-partitioned)
        rows.append(Row("sampler (bf16 copy)", params=arch.params, weights=arch.params * 2.0,
                        note="rollout_precision: bf16; refreshed before each rollout"))
    for name, folders in (("reward model", proxy), ("gold reward model", gold)):  # an ensemble: one row a member
        for i, folder in enumerate(folders):
            label = f"{name} {i + 1}" if len(folders) > 1 else name
            rows.append(frozen_model(label, resolve_arch(folder, name.replace(" ", "_")), setup, classifier=True))
    p = Plan("ppo", setup, rows)

    # dynamic sampling rolls out `dynamic_sampling` times the prompts and keeps at most prompts_per_step groups
    batch = local_share(cfg.prompts_per_step * (cfg.dynamic_sampling or 1) * cfg.samples_per_prompt, setup.world)
    mini = local_share(cfg.mini_batch_size, setup.world)
    prompt, source = longest_prompt_tokens(cfg.policy, cfg.prompts, cfg.domains_dir, cfg.seed, cfg.max_prompt_tokens)
    tokens = prompt + cfg.max_new_tokens
    p.notes.append(f"sequences: {source} + {cfg.max_new_tokens} new tokens")
    kv_bytes = decode_bytes(setup)
    p.phases["generate"] = [
        Row("KV cache", kv_cache=kv_cache_bytes(arch, batch, tokens, kv_bytes), note=f"{batch} replies × {tokens} tok")]
    p.phases["score"] = [
        Row("log π_old, log π_ref", activations=2 * logits_bytes(arch, mini, cfg.max_new_tokens, setup, grad=False),
            note=f"no gradients, {mini} replies at a time, response positions"),
    ]
    ckpt = cfg.gradient_checkpointing
    train = [training_phase(arch, mini, tokens, first, setup, ckpt, cfg.max_new_tokens, "policy mini-batch",
                            entropy=True)]  # the entropy bonus and figure
    if critic_arch is not None:
        train.append(training_phase(critic_arch, mini, tokens, critic_first, setup, ckpt, 0, "critic mini-batch"))
    if cfg.prefix_cache and setup.zero != 3 and (first or critic_first):
        h = (arch.hidden if first else 0) + (critic_arch.hidden if critic_arch is not None and critic_first else 0)
        train.append(Row("prefix cache", activations=batch * tokens * h * 4, note="frozen layers' output, fp32"))
    p.phases["train"] = train
    return p
