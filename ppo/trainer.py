"""PPO in four small steps: rollout → score → advantages → update.

Index convention: a batch holds left-padded prompts (P tokens) followed by responses (T tokens),
so sequence position P + t is response token t, and the model's prediction of it is read
at position P + t − 1: `logits[:, P-1:-1]`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from common.models import load_model_and_tokenizer
from ppo.config import PPOStageConfig
from ppo.data import Prompt
from ppo.losses import (
    AdaptiveKLController,
    FixedKLController,
    entropy_from_logits,
    explained_variance,
    gae,
    kl_penalty,
    logprobs_of,
    masked_mean,
    masked_whiten,
    policy_loss,
    token_rewards,
    value_loss,
)

# (prompts, responses, experience) → scores (B,)
ScoreFn = Callable[[list[Prompt], list[str], "Experience"], torch.Tensor]


@dataclass
class Experience:
    """One rollout batch; every tensor carries its meaning and shape."""

    sequences: torch.Tensor  # (B, P+T) prompt (left-padded) + response token ids
    attention_mask: torch.Tensor  # (B, P+T) 1 on real tokens
    response_mask: torch.Tensor  # (B, T) 1 on response tokens up to and including EOS
    prompt_len: int  # P
    ended: torch.Tensor  # (B,) bool: the response produced EOS
    logprobs: torch.Tensor | None = None  # (B, T) log π_old(a_t | s_t)
    ref_logprobs: torch.Tensor | None = None  # (B, T) log π_ref(a_t | s_t)
    values: torch.Tensor | None = None  # (B, T) V_old(s_t)
    scores: torch.Tensor | None = None  # (B,) sequence reward (normalized, clipped, penalties applied)
    kl: torch.Tensor | None = None  # (B, T) per-token KL estimate
    advantages: torch.Tensor | None = None  # (B, T)
    returns: torch.Tensor | None = None  # (B, T)

    @property
    def responses(self) -> torch.Tensor:  # (B, T)
        return self.sequences[:, self.prompt_len :]


class Critic(nn.Module):
    """A transformer backbone with a scalar head applied at every position: V(s_t)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, input_ids, attention_mask, position_ids=None) -> torch.Tensor:  # (B, L)
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        return self.head(hidden).squeeze(-1).float()


def build_critic(spec: str, zero_head: bool, freeze_layers: int = 0) -> Critic:
    from transformers import AutoModelForSequenceClassification

    model, _ = load_model_and_tokenizer(spec, model_class=AutoModelForSequenceClassification, num_labels=1)
    if zero_head:  # a fresh head starts predicting 0 rather than noise
        nn.init.zeros_(model.score.weight)
    backbone = model.base_model
    if freeze_layers > 0:  # backpropagation stops at the first trained layer: cheaper steps
        backbone.embed_tokens.requires_grad_(False)
        for layer in backbone.layers[:freeze_layers]:
            layer.requires_grad_(False)
    return Critic(backbone, model.score)


class PPOTrainer:
    def __init__(self, cfg: PPOStageConfig, policy, tokenizer, critic: Critic, score_fn: ScoreFn):
        self.cfg, self.tokenizer, self.critic, self.score_fn = cfg, tokenizer, critic, score_fn
        if cfg.finetune == "lora":
            from peft import LoraConfig, get_peft_model

            # the reference is the same weights with the adapters switched off: no second copy
            self.policy = get_peft_model(
                policy,
                LoraConfig(
                    r=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                    layers_to_transform=cfg.lora_layers, task_type="CAUSAL_LM",
                ),
            )
            self.ref_policy = None
        else:
            self.policy = policy
            self.ref_policy = copy.deepcopy(policy).eval().requires_grad_(False)
        self.policy_opt = torch.optim.AdamW([p for p in self.policy.parameters() if p.requires_grad], lr=cfg.policy_lr)
        self.critic_opt = torch.optim.AdamW([p for p in self.critic.parameters() if p.requires_grad], lr=cfg.critic_lr)
        self.kl_ctl = (
            AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.adaptive_kl else FixedKLController(cfg.kl_coef)
        )
        self.tokenizer.padding_side = "left"
        self.last_samples: list[dict] = []  # the latest rollout, for the run folder

    # ------------------------------------------------------------------ model passes

    @staticmethod
    def _inputs(exp: Experience, rows) -> dict[str, torch.Tensor]:
        mask = exp.attention_mask[rows]
        # positions count real tokens only, as `generate` counted them for left-padded prompts
        return {"input_ids": exp.sequences[rows], "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}

    def _logits(self, model, exp: Experience, rows=slice(None)) -> torch.Tensor:
        out = model(**self._inputs(exp, rows)).logits
        return out[:, exp.prompt_len - 1 : -1].float() / self.cfg.temperature  # (b, T, V)

    def _values(self, exp: Experience, rows=slice(None)) -> torch.Tensor:
        values = self.critic(**self._inputs(exp, rows))
        return values[:, exp.prompt_len - 1 : -1]  # (b, T)

    @torch.no_grad()
    def _ref_logprobs(self, exp: Experience) -> torch.Tensor:
        if self.ref_policy is not None:
            return logprobs_of(self._logits(self.ref_policy, exp), exp.responses)
        with self.policy.disable_adapter():
            return logprobs_of(self._logits(self.policy, exp), exp.responses)

    # ------------------------------------------------------------------ 1. rollout

    @torch.no_grad()
    def rollout(self, prompts: list[Prompt]) -> Experience:
        cfg, tok = self.cfg, self.tokenizer
        texts = [tok.apply_chat_template(p.messages, add_generation_prompt=True, tokenize=False) for p in prompts]
        batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        self.policy.eval()
        out = self.policy.generate(
            **batch,
            do_sample=True,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_k=cfg.top_k or None,
            top_p=cfg.top_p,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            use_cache=True,
        )  # (B, P + T'), T' ≤ max_new_tokens
        prompt_len = batch["input_ids"].shape[1]
        responses = out[:, prompt_len:]
        is_eos = responses == tok.eos_token_id
        ended = is_eos.any(dim=1)
        first_eos = torch.where(ended, is_eos.float().argmax(dim=1), torch.full_like(ended, responses.shape[1], dtype=torch.long))
        positions = torch.arange(responses.shape[1])[None, :]
        response_mask = (positions <= first_eos[:, None]).float()  # up to and including EOS
        attention_mask = torch.cat([batch["attention_mask"], response_mask.long()], dim=1)
        return Experience(out, attention_mask, response_mask, prompt_len, ended)

    # ------------------------------------------------------------------ 2. score

    @torch.no_grad()
    def score(self, exp: Experience, prompts: list[Prompt]) -> None:
        cfg = self.cfg
        exp.logprobs = logprobs_of(self._logits(self.policy, exp), exp.responses)
        exp.ref_logprobs = self._ref_logprobs(exp)
        exp.values = self._values(exp)
        texts = [
            self.tokenizer.decode(r[m.bool()], skip_special_tokens=True) for r, m in zip(exp.responses, exp.response_mask)
        ]
        scores = self.score_fn(prompts, texts, exp).float().clamp(-cfg.reward_clip, cfg.reward_clip)
        if cfg.missing_eos_penalty is not None:
            scores = scores - cfg.missing_eos_penalty * (~exp.ended).float()
        exp.scores = scores
        self.last_samples = [
            {"prompt": p.messages[-1]["content"], "domain": p.domain, "response": t, "score": s}
            for p, t, s in zip(prompts, texts, scores.tolist())
        ]

    # ------------------------------------------------------------------ 3. advantages

    def advantages(self, exp: Experience) -> None:
        cfg, mask = self.cfg, exp.response_mask
        exp.kl = kl_penalty(exp.logprobs, exp.ref_logprobs, cfg.kl_estimator) * mask
        beta = self.kl_ctl.value if cfg.kl_in_reward else 0.0
        rewards = token_rewards(exp.scores, exp.kl, beta, mask)
        advantages, exp.returns = gae(rewards, exp.values, mask, cfg.gamma, cfg.lam)
        exp.advantages = masked_whiten(advantages, mask) if cfg.whiten_advantages else advantages

    # ------------------------------------------------------------------ 4. update

    def update(self, exp: Experience) -> dict[str, float]:
        cfg, n = self.cfg, exp.sequences.shape[0]
        self.policy.train()
        self.critic.train()
        sums: dict[str, float] = {}
        count = 0
        for _ in range(cfg.ppo_epochs):
            for rows in torch.randperm(n).split(cfg.mini_batch_size):
                mask = exp.response_mask[rows]
                logits = self._logits(self.policy, exp, rows)
                logprobs = logprobs_of(logits, exp.responses[rows])
                entropy = masked_mean(entropy_from_logits(logits), mask)
                p_loss, p_stats = policy_loss(logprobs, exp.logprobs[rows], exp.advantages[rows], mask, cfg.cliprange)
                loss = p_loss - cfg.entropy_coef * entropy
                if not cfg.kl_in_reward:
                    loss = loss + self.kl_ctl.value * masked_mean(
                        kl_penalty(logprobs, exp.ref_logprobs[rows], cfg.kl_estimator), mask
                    )
                self.policy_opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(self.policy.parameters(), cfg.max_grad_norm)
                self.policy_opt.step()

                values = self._values(exp, rows)
                v_loss, v_stats = value_loss(values, exp.values[rows], exp.returns[rows], mask, cfg.cliprange_value)
                self.critic_opt.zero_grad(set_to_none=True)
                (cfg.vf_coef * v_loss).backward()
                nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.max_grad_norm)
                self.critic_opt.step()

                for key, value in {
                    "loss/policy": p_loss.item(), "loss/value": v_loss.item(), "objective/entropy": entropy.item(),
                    "policy/approxkl": p_stats["approxkl"].item(), "policy/clipfrac": p_stats["clipfrac"].item(),
                    "val/clipfrac": v_stats["clipfrac"].item(),
                }.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
        return {k: v / count for k, v in sums.items()}

    # ------------------------------------------------------------------ one step

    def step(self, prompts: list[Prompt]) -> dict[str, float]:
        cfg = self.cfg
        prompts = [p for p in prompts for _ in range(cfg.samples_per_prompt)]
        t0 = time.perf_counter()
        exp = self.rollout(prompts)
        t1 = time.perf_counter()
        self.score(exp, prompts)
        self.advantages(exp)
        t2 = time.perf_counter()
        stats = self.update(exp)
        t3 = time.perf_counter()
        mask = exp.response_mask
        kl_per_response = (exp.kl * mask).sum(dim=1).mean().item()
        self.kl_ctl.update(kl_per_response, len(prompts))
        n_tokens = mask.sum().item()
        return {
            **stats,
            "objective/kl": kl_per_response,
            "objective/scores": exp.scores.mean().item(),
            "objective/rlhf_reward": (exp.scores - self.kl_ctl.value * (exp.kl * mask).sum(dim=1)).mean().item(),
            "val/explained_variance": explained_variance(exp.values, exp.returns, mask).item(),
            "kl_coef": self.kl_ctl.value,
            "response_length": mask.sum(dim=1).mean().item(),
            "eos_fraction": exp.ended.float().mean().item(),
            "tokens_per_second": n_tokens / (t3 - t0),
            "time/generate": t1 - t0,
            "time/score": t2 - t1,
            "time/train": t3 - t2,
        }
