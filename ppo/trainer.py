"""PPO in four small steps: rollout → score → advantages → update.

Index convention: a batch holds left-padded prompts (P tokens) followed by responses (T tokens),
so sequence position P + t is response token t, and the model's prediction of it is read
at position P + t − 1: `logits[:, P-1:-1]`.

Models: the actor (`PolicyModel`: the language model, LoRA-wrapped or full, plus an optional
value head) and the critic (a separate value model, or that head) train through
`common.training.engines.Trainable` — plain PyTorch alone, DeepSpeed ZeRO-2/3 across ranks. With DeepSpeed
each rank rolls out and trains on its own share of the step's prompts; gradients are averaged.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable

import torch
from torch import nn

from common import distributed
from common.config import ConfigError
from common.data.prompts import Prompt
from common.models.precision import autocast
from common.models.prefix import decoder_of, first_trainable_layer, layers_only, prefix_hidden
from common.planning.measure import peak_memory_gb
from common.training.engines import Trainable, inference_module, zero_stage
from ppo.config import PPOStageConfig
from ppo.estimators import gspo_token_policy_loss, informative_groups, overlong_penalty
from ppo.experience import Experience
from ppo.losses import (
    AdaptiveKLController,
    FixedKLController,
    aggregate_loss,
    entropy_from_logits,
    explained_variance,
    gae,
    grpo_advantages,
    kl_penalty,
    logprobs_of,
    masked_mean,
    masked_whiten,
    policy_loss,
    reinforce_baseline_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
    rollout_correction_weights,
    sequence_to_tokens,
    token_rewards,
    value_loss,
)
from ppo.models import Critic, PolicyModel, wrap_lora

ROLLOUT_DTYPES = {"bf16": torch.bfloat16}

# (prompts, responses, experience) → scores (B,)
ScoreFn = Callable[[list[Prompt], list[str], "Experience"], torch.Tensor]


class PPOTrainer:
    """`step(prompts)` = rollout → score → advantages → update, on this rank's prompts.

    `critic` is a separate value model, or None for a value head on the policy
    (`cfg.value_model = policy_head`). `ds` is a filled DeepSpeed config, or None.
    """

    def __init__(self, cfg: PPOStageConfig, policy, tokenizer, critic: Critic | None, score_fn: ScoreFn,
                 ds: dict | None = None):
        self.cfg, self.tokenizer, self.score_fn = cfg, tokenizer, score_fn
        self.device = distributed.device()
        self.generate_kwargs = self._generation_options(ds)  # first: a bad combination fails before any model work
        # the sampler: the trained model itself, or a lower-precision copy refreshed before each rollout
        self.rollout_policy = None
        if cfg.rollout_precision != "same":
            if zero_stage(ds) == 3:
                raise ConfigError(f"rollout_precision: {cfg.rollout_precision} keeps a whole copy of the policy on each "
                                  f"rank, which ZeRO-3 ({cfg.deepspeed}) partitions; set rollout_precision: same")
            self.rollout_policy = copy.deepcopy(policy).to(ROLLOUT_DTYPES[cfg.rollout_precision]).eval().requires_grad_(False)
        if cfg.finetune == "full":  # the reference is a frozen copy (partitioned under ZeRO-3)
            self.ref_policy = inference_module(copy.deepcopy(policy), ds)
        else:  # the reference is the same weights with the adapters switched off: no second copy
            policy = wrap_lora(policy, cfg)
            self.ref_policy = None
        head = None
        if critic is None and cfg.uses_critic:
            head = nn.Linear(policy.config.hidden_size, 1)
            nn.init.zeros_(head.weight), nn.init.zeros_(head.bias)  # V starts at 0, not noise
        if cfg.gradient_checkpointing:  # recompute each trained layer's activations in the backward pass
            for module in (policy, critic.backbone if critic is not None else None):
                if module is not None:
                    module.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model = PolicyModel(policy, head)
        groups = [{"params": [p for p in policy.parameters() if p.requires_grad], "lr": cfg.policy_lr}]
        if head is not None:
            groups.append({"params": list(head.parameters()), "lr": cfg.critic_lr})
        self.actor = Trainable(model, groups, cfg.max_grad_norm, ds)
        self.critic = None if critic is None else Trainable(critic, cfg.critic_lr, cfg.max_grad_norm, ds)
        # prefix cache: layers below the lowest trained one run once per rollout batch (not under
        # ZeRO-3, whose hooks follow the module tree)
        use_prefix = cfg.prefix_cache and zero_stage(ds) != 3
        self.policy_k = first_trainable_layer(decoder_of(policy)) if use_prefix else 0
        self.critic_k = first_trainable_layer(critic.backbone) if use_prefix and critic is not None else 0
        self.kl_ctl = (
            AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.adaptive_kl
            else FixedKLController(cfg.kl_coef)
        )
        self.tokenizer.padding_side = "left"
        self.last_samples: list[dict] = []  # the latest rollout, for the run folder

    @property
    def policy(self) -> nn.Module:
        """The language model being trained (a PEFT model with a LoRA policy)."""
        return self.actor.module.lm

    # ------------------------------------------------------------------ model passes

    def _autocast(self):
        return autocast(self.cfg.precision, self.device)

    @staticmethod
    def _inputs(exp: Experience, rows, prefix: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Model inputs for `rows`: token ids, or the cached prefix hidden state in their place."""
        mask = exp.attention_mask[rows]
        # positions count real tokens only, as `generate` counted them for left-padded prompts
        inputs = {"attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}
        if prefix is not None:
            return {"inputs_embeds": prefix[rows], **inputs}
        return {"input_ids": exp.sequences[rows], **inputs}

    def _top_layers(self, module: nn.Module, k: int):
        return layers_only(decoder_of(module), slice(k, None)) if k else contextlib.nullcontext()

    def _response_part(self, exp: Experience, x: torch.Tensor) -> torch.Tensor:
        return x[:, exp.prompt_len - 1 : -1]  # predictions of the T response tokens

    def _actor(self, exp: Experience, rows=slice(None), with_values: bool = False):
        """→ logits (b, T, V) at the sampling temperature, values (b, T) or None."""
        n = exp.responses.shape[1]
        with self._autocast(), self._top_layers(self.policy, self.policy_k):
            # the LM head runs on the last T + 1 positions only: predictions of the T response tokens
            logits, values = self.actor(**self._inputs(exp, rows, exp.policy_prefix), with_values=with_values,
                                        logits_to_keep=n + 1)
        logits = logits[:, :-1].float() / self.cfg.temperature
        return logits, None if values is None else self._response_part(exp, values)

    def _critic(self, exp: Experience, rows=slice(None)) -> torch.Tensor:  # (b, T)
        with self._autocast(), self._top_layers(self.critic.module.backbone, self.critic_k):
            return self._response_part(exp, self.critic(**self._inputs(exp, rows, exp.critic_prefix)))

    def _prefixes(self, exp: Experience) -> None:
        ids = self._inputs(exp, slice(None))
        with self._autocast():
            if self.policy_k:
                exp.policy_prefix = prefix_hidden(decoder_of(self.policy), self.policy_k, **ids)
            if self.critic_k:
                exp.critic_prefix = prefix_hidden(self.critic.module.backbone, self.critic_k, **ids)

    @torch.no_grad()
    def _ref_logprobs(self, exp: Experience, rows=slice(None)) -> torch.Tensor:
        """log π_ref of the response tokens (b, T) for `rows`."""
        if self.ref_policy is not None:
            n = exp.responses.shape[1]
            with self._autocast():  # the LM head on the last T + 1 positions only, as for π
                logits = self.ref_policy(**self._inputs(exp, rows), use_cache=False, logits_to_keep=n + 1).logits
            return logprobs_of(logits[:, :-1].float() / self.cfg.temperature, exp.responses[rows])
        with self.policy.disable_adapter():
            return logprobs_of(self._actor(exp, rows)[0], exp.responses[rows])

    # ------------------------------------------------------------------ 1. rollout

    def _generation_options(self, ds: dict | None) -> dict:
        """`generate` options for the decoding path: a static KV cache and a compiled decoding step
        (transformers compiles it; CUDA graphs on a GPU remove the per-kernel launch cost that
        dominates small-batch decoding), or the default dynamic cache."""
        on = self.cfg.compile_generation
        if on is None:
            on = self.device.type == "cuda" and zero_stage(ds) != 3
        if not on:
            return {}
        if zero_stage(ds) == 3:
            raise ConfigError(f"compile_generation: true does not work under ZeRO-3 ({self.cfg.deepspeed}: its parameter "
                              "hooks); leave it null (auto) or set it false")
        from transformers import CompileConfig

        compile_config = CompileConfig(mode="reduce-overhead" if self.device.type == "cuda" else "default")
        compile_config._compile_all_devices = True  # transformers compiles on accelerators only unless told
        return {"cache_implementation": "static", "compile_config": compile_config}

    @torch.no_grad()
    def _refresh_rollout_policy(self) -> None:
        """Copy the trained weights into the sampler, cast to its precision: for a LoRA policy each
        adapted layer's merged weight W + ΔW (the live model stays unmerged), for a full one every
        trained parameter. The frozen rest was copied once, at the start."""
        from peft.tuners.lora import LoraLayer

        target = dict(self.rollout_policy.named_modules())
        if self.cfg.finetune == "full":
            params = dict(self.rollout_policy.named_parameters())
            for name, p in self.policy.named_parameters():
                if p.requires_grad:
                    params[name].copy_(p)
            return
        prefix = "base_model.model."  # PEFT's wrapper around the language model
        for name, module in self.policy.named_modules():
            if isinstance(module, LoraLayer):
                weight = module.get_base_layer().weight
                for adapter in module.active_adapters:
                    weight = weight + module.get_delta_weight(adapter)
                target[name.removeprefix(prefix)].weight.copy_(weight)

    @staticmethod
    def _sampled_logprobs(step_logits: tuple[torch.Tensor, ...], tokens: torch.Tensor, temperature: float) -> torch.Tensor:
        """log π_rollout of the sampled tokens (B, T') from `generate`'s raw logits, one (B, V) per
        step, at the sampling temperature (as π_old is scored), one step at a time: never (B, T', V)."""
        return torch.cat([logprobs_of(logits[:, None] / temperature, tokens[:, t, None])
                          for t, logits in enumerate(step_logits)], dim=1)

    @staticmethod
    def _prefill_once(sampler: nn.Module, batch, k: int):
        """The KV cache of every prompt but its last token, computed once per distinct prompt and
        repeated for its k samples (the batch holds each prompt k times in a row): `generate` then
        runs the last prompt token and decodes. The same cache as k separate prompt passes, at 1/k
        of their cost. → a DynamicCache over P − 1 positions, B rows."""
        ids, mask = batch["input_ids"][::k, :-1], batch["attention_mask"][::k, :-1]  # (B/k, P−1)
        out = sampler(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                      use_cache=True, logits_to_keep=1)
        out.past_key_values.batch_repeat_interleave(k)
        return out.past_key_values

    @torch.no_grad()
    def rollout(self, prompts: list[Prompt]) -> Experience:
        cfg, tok = self.cfg, self.tokenizer
        texts = [tok.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=False) for p in prompts]
        # a compiled decoding step recompiles for every new cache length: prompts padded to a multiple of 64
        pad_to = 64 if self.generate_kwargs else None
        batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False, pad_to_multiple_of=pad_to)
        batch = batch.to(self.device)
        self.actor.train(False)
        # decoding runs without autocast on a CPU and on the compiled path. CPU: autocast re-casts every
        # weight at every decoding step, which costs more than bf16 matmuls save at rollout batch sizes
        # (AMX CPU, batch 8 × 48 tokens: 9.8 s under autocast, 7.1 s in fp32). Compiled path: under
        # autocast its static cache would get fp32 keys (RoPE promotes them) but bf16 values.
        eager_gpu = not self.generate_kwargs and self.device.type == "cuda" and self.rollout_policy is None
        precision = self._autocast() if eager_gpu else contextlib.nullcontext()
        sampler = self.policy
        if self.rollout_policy is not None:  # a copy in its own precision: its logits come back for the correction
            self._refresh_rollout_policy()
            sampler = self.rollout_policy
        k = cfg.samples_per_prompt
        shared = (cfg.shared_prefill and k > 1 and not self.generate_kwargs and len(texts) % k == 0
                  and all(texts[i] == texts[i - i % k] for i in range(len(texts))))
        with self.actor.generation_context(), precision:
            cache = {"past_key_values": self._prefill_once(sampler, batch, k)} if shared else {}
            out = sampler.generate(
                **batch,
                do_sample=True,
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                top_k=cfg.top_k,  # 0 = off; None would mean transformers' default of 50
                top_p=cfg.top_p,
                eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id,
                use_cache=True,
                output_logits=sampler is not self.policy,
                return_dict_in_generate=True,
                **cache,
                **self.generate_kwargs,
            )
        prompt_len = batch["input_ids"].shape[1]
        responses = out.sequences[:, prompt_len:]  # (B, T'), T' ≤ max_new_tokens
        is_eos = responses == tok.eos_token_id
        ended = is_eos.any(dim=1)
        first_eos = torch.where(ended, is_eos.float().argmax(dim=1), torch.full_like(ended, responses.shape[1], dtype=torch.long))
        positions = torch.arange(responses.shape[1], device=self.device)[None, :]
        response_mask = (positions <= first_eos[:, None]).float()  # up to and including EOS
        attention_mask = torch.cat([batch["attention_mask"], response_mask.long()], dim=1)
        exp = Experience(out.sequences, attention_mask, response_mask, prompt_len, ended)
        if sampler is not self.policy:
            exp.rollout_logprobs = self._sampled_logprobs(out.logits, responses, cfg.temperature) * response_mask
        return exp

    # ------------------------------------------------------------------ 2. score

    @torch.no_grad()
    def score(self, exp: Experience, prompts: list[Prompt]) -> None:
        cfg = self.cfg
        self._prefixes(exp)
        # log π_old, log π_ref and V in chunks of a mini-batch: the (b, T, V) logits of one chunk at a time;
        # the on-policy shortcut leaves log π_old to the update
        logps, refs, vals = [], [], []
        for start in range(0, exp.responses.shape[0], self.mini_batch):
            rows = slice(start, start + self.mini_batch)
            values = None
            if not self.old_from_update:
                logits, values = self._actor(exp, rows, with_values=self.value_head)
                logps.append(logprobs_of(logits, exp.responses[rows]))
                del logits
            refs.append(self._ref_logprobs(exp, rows))
            vals.append(self._critic(exp, rows) if self.critic is not None else values)
        exp.logprobs = torch.cat(logps) if logps else None  # None: filled in by the update
        exp.ref_logprobs = torch.cat(refs)
        exp.values = None if vals[0] is None else torch.cat(vals)  # None without a critic
        texts = [
            self.tokenizer.decode(r[m.bool()], skip_special_tokens=True) for r, m in zip(exp.responses, exp.response_mask)
        ]
        scores = self.score_fn(prompts, texts, exp).float().to(self.device).clamp(-cfg.reward_clip, cfg.reward_clip)
        if cfg.missing_eos_penalty is not None:
            scores = scores - cfg.missing_eos_penalty * (~exp.ended).float()
        if cfg.overlong_buffer is not None:
            scores = scores + overlong_penalty(exp.response_mask.sum(dim=1), cfg.max_new_tokens, cfg.overlong_buffer)
        exp.scores = scores
        self.last_samples = [
            {"prompt": p.messages[-1]["content"], "domain": p.domain, "response": t, "score": s}
            for p, t, s in zip(prompts, texts, scores.tolist())
        ]

    # ------------------------------------------------------------------ 3. advantages

    def advantages(self, exp: Experience) -> None:
        """Per-token advantages (B, T) by the configured estimator; the samples of one prompt lie
        next to each other in the batch, so sample i belongs to group i // samples_per_prompt."""
        cfg, mask = self.cfg, exp.response_mask
        exp.kl = self._kl(exp)  # None until the update when log π_old comes from it (the KL is then not in the reward)
        kl = exp.kl if exp.kl is not None else torch.zeros_like(mask)
        beta = self.kl_ctl.value if cfg.kl_in_reward else 0.0
        rewards = token_rewards(exp.scores, kl, beta, mask)  # (B, T): −β·KL_t, + score at the end
        if cfg.advantage_estimator == "gae":
            advantages, exp.returns = gae(rewards, exp.values, mask, cfg.gamma, cfg.lam)
            exp.advantages = masked_whiten(advantages, mask) if cfg.whiten_advantages else advantages
        elif cfg.advantage_estimator == "reinforce_pp":
            exp.advantages = reinforce_pp_advantages(rewards, mask, cfg.gamma)
        elif cfg.advantage_estimator == "reinforce_baseline":
            exp.advantages = reinforce_baseline_advantages(exp.scores, self.groups(exp), kl, beta, mask, cfg.gamma)
        else:  # group baselines on the sequence reward (score − β·Σ KL when the KL is in the reward)
            sequence = rewards.sum(dim=1)  # (B,)
            groups = self.groups(exp)
            if cfg.advantage_estimator == "grpo":
                per_sample = grpo_advantages(sequence, groups, scale=cfg.grpo_scale)
            else:
                per_sample = rloo_advantages(sequence, groups)
            exp.advantages = sequence_to_tokens(per_sample, mask)

    def _kl(self, exp: Experience) -> torch.Tensor | None:
        """(B, T) per-token KL estimate on response tokens; None while log π_old is missing (the shortcut's)."""
        if exp.logprobs is None:
            return None
        return kl_penalty(exp.logprobs, exp.ref_logprobs, self.cfg.kl_estimator) * exp.response_mask

    @property
    def old_from_update(self) -> bool:
        """The on-policy shortcut: each batch makes one optimizer step from these weights, so log π_old
        is the update's own forward pass, detached — exact, without a pass of its own."""
        cfg = self.cfg
        rows = cfg.prompts_per_step // distributed.world_size() * cfg.samples_per_prompt  # this rank's batch
        return (cfg.on_policy_shortcut and cfg.ppo_epochs == 1 and rows <= self.mini_batch and not cfg.kl_in_reward
                and not self.value_head)

    def groups(self, exp: Experience) -> torch.Tensor:
        """(B,) prompt ids: the samples of one prompt lie next to each other in the batch."""
        return torch.arange(exp.sequences.shape[0], device=exp.sequences.device) // self.cfg.samples_per_prompt

    def informative(self, exp: Experience) -> torch.Tensor:
        """DAPO's dynamic sampling: the rows (indices) of up to prompts_per_step groups whose scores
        are not all equal — those first, in order; every rank keeps the same number of groups (its
        optimizer steps must match), at least one, topped up with uninformative groups if need be."""
        k = self.cfg.samples_per_prompt
        useful = informative_groups(exp.scores, self.groups(exp))[::k].tolist()  # one flag a group
        wanted = self.cfg.prompts_per_step // distributed.world_size()
        kept = max(1, min(min(wanted, sum(flags)) for flags in distributed.all_gather_objects(useful)))
        order = [g for g, u in enumerate(useful) if u] + [g for g, u in enumerate(useful) if not u]
        return torch.tensor([g * k + i for g in sorted(order[:kept]) for i in range(k)], device=exp.sequences.device)

    # ------------------------------------------------------------------ 4. update

    @property
    def value_head(self) -> bool:
        """The value function is a head on the policy's trunk (one backward for both losses)."""
        return self.actor.module.value_head is not None

    def update(self, exp: Experience) -> dict[str, float]:
        cfg, n = self.cfg, exp.sequences.shape[0]
        shared = self.value_head
        self.actor.train()
        if self.critic is not None:
            self.critic.train()
        sums: dict[str, float] = {}
        ratios: list[float] = []
        count = 0
        fill = exp.logprobs is None  # the on-policy shortcut: log π_old is this pass's, detached
        if fill:
            exp.logprobs = torch.zeros_like(exp.response_mask)
        for _ in range(cfg.ppo_epochs):
            for rows in torch.randperm(n).split(self.mini_batch):
                mask = exp.response_mask[rows]
                logits, values = self._actor(exp, rows, with_values=shared)
                logprobs = logprobs_of(logits, exp.responses[rows])
                if fill:
                    exp.logprobs[rows] = logprobs.detach()
                token_entropy = entropy_from_logits(logits)  # (b, T)
                entropy = masked_mean(token_entropy, mask)
                weights, c_stats = None, {}
                if exp.rollout_logprobs is not None:  # sampled by another copy: π_old / π_rollout, bounded
                    weights, c_stats = rollout_correction_weights(exp.logprobs[rows], exp.rollout_logprobs[rows], mask,
                                                                  cfg.rollout_correction or "token_truncate",
                                                                  cfg.rollout_correction_cap)
                    if cfg.rollout_correction is None:  # measured, not applied
                        weights = None
                if cfg.policy_ratio == "sequence":  # GSPO: one clipped ratio per reply
                    p_loss, p_stats = gspo_token_policy_loss(logprobs, exp.logprobs[rows], exp.advantages[rows], mask,
                                                             cfg.cliprange, cfg.cliprange_high or cfg.cliprange, weights)
                else:
                    p_loss, p_stats = policy_loss(logprobs, exp.logprobs[rows], exp.advantages[rows], mask, cfg.cliprange,
                                                  cfg.cliprange_high, cfg.loss_agg_mode, cfg.max_new_tokens, weights)
                loss = p_loss - cfg.entropy_coef * aggregate_loss(token_entropy, mask, cfg.loss_agg_mode, cfg.max_new_tokens)
                if not cfg.kl_in_reward:  # k2/k3 as a loss term, clamped so one token cannot dominate
                    kl = kl_penalty(logprobs, exp.ref_logprobs[rows], cfg.kl_estimator, clamp=True)
                    loss = loss + self.kl_ctl.value * aggregate_loss(kl, mask, cfg.loss_agg_mode, cfg.max_new_tokens)
                # TRL's PPO names (docs/tracking.md): averages over every mini-batch of every epoch
                figures = {"loss/policy_avg": p_loss.item(), "policy/entropy_avg": entropy.item(),
                           "policy/approxkl_avg": p_stats["approxkl"].item(),
                           "policy/clipfrac_avg": p_stats["clipfrac"].item()}
                figures.update({f"rollout/{k}": v.item() for k, v in c_stats.items()})
                ratios.append(p_stats["ratio"].item())
                if shared:  # one trunk: one backward through policy and value losses together
                    v_loss, v_stats = value_loss(values, exp.values[rows], exp.returns[rows], mask, cfg.cliprange_value)
                    self.actor.backward_step(loss + cfg.vf_coef * v_loss)
                else:
                    self.actor.backward_step(loss)
                    if self.critic is not None:
                        values = self._critic(exp, rows)
                        v_loss, v_stats = value_loss(values, exp.values[rows], exp.returns[rows], mask,
                                                     cfg.cliprange_value)
                        self.critic.backward_step(cfg.vf_coef * v_loss)
                if cfg.uses_critic:  # without a critic the value figures are absent, not zero
                    figures.update({"loss/value_avg": v_loss.item(), "val/clipfrac_avg": v_stats["clipfrac"].item()})

                for key, value in figures.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
        out = {k: v / count for k, v in sums.items()}
        out["val/ratio"] = sum(ratios) / len(ratios)  # mean π/π_old over mini-batches, and its variance
        out["val/ratio_var"] = sum((r - out["val/ratio"]) ** 2 for r in ratios) / len(ratios)
        return out

    @property
    def mini_batch(self) -> int:
        """Responses per optimizer step on this rank (mini_batch_size is global)."""
        return max(1, self.cfg.mini_batch_size // distributed.world_size())

    # ------------------------------------------------------------------ one step

    def step(self, prompts: list[Prompt]) -> dict[str, float]:
        """One PPO step on this rank's prompts; the returned figures are averaged over ranks."""
        cfg = self.cfg
        prompts = [p for p in prompts for _ in range(cfg.samples_per_prompt)]
        t0 = time.perf_counter()
        exp = self.rollout(prompts)
        t1 = time.perf_counter()
        self.score(exp, prompts)
        pool_scores = exp.scores  # (B,) every sampled reply's, for the curve: kept groups are a biased subset
        extra = {}
        if cfg.dynamic_sampling is not None:
            rows = self.informative(exp)
            extra = {"dapo/kept_groups": len(rows) / cfg.samples_per_prompt,
                     "dapo/informative_share": informative_groups(exp.scores, self.groups(exp)).float().mean().item()}
            exp = exp.select(rows)
        self.advantages(exp)
        t2 = time.perf_counter()
        stats = self.update(exp)
        t3 = time.perf_counter()
        mask = exp.response_mask
        if exp.kl is None:  # the on-policy shortcut's: log π_old came from the update
            exp.kl = self._kl(exp)
        kl_sum = (exp.kl * mask).sum(dim=1)  # (B,) KL per response
        if cfg.uses_critic:
            stats["val/explained_variance"] = explained_variance(exp.values, exp.returns, mask).item()
        non_score = -self.kl_ctl.value * kl_sum  # (B,) −β·KL per response
        stats = distributed.mean_across({
            **stats,
            "objective/kl": kl_sum.mean().item(),
            "objective/entropy": -(exp.logprobs * mask).sum(dim=1).mean().item(),  # −Σ_t log π(y_t) per response
            **extra,
            "objective/scores": pool_scores.mean().item(),
            "objective/non_score_reward": non_score.mean().item(),
            "objective/rlhf_reward": (exp.scores + non_score).mean().item(),
            "response_length": mask.sum(dim=1).mean().item(),
            "eos_fraction": exp.ended.float().mean().item(),
            "val/num_eos_tokens": exp.ended.float().sum().item(),
            "eps": len(prompts) / (t3 - t0),
            "lr": self.actor.learning_rate,
            "tokens_per_second": mask.sum().item() / (t3 - t0),
            "time/generate": t1 - t0,
            "time/score": t2 - t1,
            "time/train": t3 - t2,
            "perf/peak_memory_gb": peak_memory_gb(self.device),
        })
        for key in ("tokens_per_second", "eps", "val/num_eos_tokens"):  # every rank's, not one rank's
            stats[key] *= distributed.world_size()
        self.kl_ctl.update(stats["objective/kl"], len(prompts) * distributed.world_size())
        stats["kl_coef"] = self.kl_ctl.value
        return stats
