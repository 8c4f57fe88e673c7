"""Offline BCQ training in small steps: batch → q_values → targets → update → target update.

Layout of a batch: left-padded prompts (P tokens) then right-padded responses (T tokens).
The state before response token t is read at sequence position P − 1 + t, so the T + 1
states s_0 … s_T of a response are positions P − 1 … P + T − 1 (`start = P − 1`).

State cache (`cache_states`, shared trunk, not under ZeRO-3): the trunk is G's and frozen, so
what it gives a record — the hidden states s_0 … s_T and the tokens G allows at s_1 … s_T —
never changes. It is computed once per record (`warm_cache`, batches of similar length) and
every step then costs only Q at the K tokens it needs (`cached_loss`): the same TD targets as
the full-vocabulary path, without a trunk pass.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from bcq_offline.config import BCQStageConfig
from bcq_offline.constraint import allowed_actions
from bcq_offline.data import LoggedResponse
from bcq_offline.losses import double_q_targets, polyak_update, td_loss, token_rewards
from bcq_offline.model import BCQModel, target_q, trainable_copy
from common import distributed
from common.models.precision import autocast
from common.training.engines import Trainable, zero_stage

log = logging.getLogger(__name__)


@dataclass
class TokenBatch:
    sequences: torch.Tensor  # (B, P+T) token ids
    attention_mask: torch.Tensor  # (B, P+T)
    response_mask: torch.Tensor  # (B, T) 1 on response tokens
    prompt_len: int  # P
    rewards: torch.Tensor  # (B,) one per response, on its last token

    @property
    def responses(self) -> torch.Tensor:  # (B, T)
        return self.sequences[:, self.prompt_len :]

    def inputs(self) -> dict[str, torch.Tensor]:
        mask = self.attention_mask
        return {"input_ids": self.sequences, "attention_mask": mask, "position_ids": (mask.cumsum(-1) - 1).clamp(min=0)}


def encode_records(tokenizer, records: list[LoggedResponse], max_response_tokens: int, device=None) -> TokenBatch:
    """Prompts through the chat template (left-padded), responses + EOS cut to max_response_tokens (right-padded)."""
    prompts = [tokenizer.apply_chat_template(r.prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
               for r in records]
    responses = [(tokenizer(r.response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])[:max_response_tokens]
                 for r in records]
    p_len, t_len, pad = max(map(len, prompts)), max(map(len, responses)), tokenizer.pad_token_id
    seq = torch.full((len(records), p_len + t_len), pad, dtype=torch.long)
    attn = torch.zeros_like(seq)
    for i, (p, r) in enumerate(zip(prompts, responses)):
        seq[i, p_len - len(p) : p_len] = torch.tensor(p)
        seq[i, p_len : p_len + len(r)] = torch.tensor(r)
        attn[i, p_len - len(p) : p_len + len(r)] = 1
    batch = TokenBatch(seq, attn, attn[:, p_len:].float(), p_len, torch.tensor([r.reward for r in records], dtype=torch.float))
    if device is not None:
        batch = TokenBatch(batch.sequences.to(device), batch.attention_mask.to(device), batch.response_mask.to(device),
                           p_len, batch.rewards.to(device))
    return batch


@dataclass
class CachedRecord:
    """What G's frozen trunk gives one logged record of T response tokens (computed once)."""

    hidden: torch.Tensor  # (T+1, H) last hidden state at s_0 … s_T
    allowed: torch.Tensor  # (T, K) ids of the tokens allowed at s_1 … s_T: G's top K, K = most allowed at any step
    valid: torch.Tensor  # (T, K) bool: which of those K pass the constraint at that step
    actions: torch.Tensor  # (T,) the logged tokens a_0 … a_{T−1}
    reward: float


class BCQTrainer:
    def __init__(self, cfg: BCQStageConfig, model: BCQModel, tokenizer, ds: dict | None = None):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.device = distributed.device()
        self.q = Trainable(model, cfg.learning_rate, cfg.max_grad_norm, ds)
        with self.q.gathered(self._online()):  # whole tensors under ZeRO-3
            self.target = trainable_copy(self.q.module)  # Q' starts equal to Q
        # record id → CachedRecord; None = every step runs the trunk (separate trunk, or ZeRO-3,
        # where the head's weights exist whole only inside its own forward)
        use_cache = cfg.cache_states and not model.separate and zero_stage(ds) != 3
        self.cache: dict[int, CachedRecord] | None = {} if use_cache else None

    @property
    def model(self) -> BCQModel:
        return self.q.module

    def batch(self, records: list[LoggedResponse]) -> TokenBatch:
        return encode_records(self.tokenizer, records, self.cfg.max_response_tokens, self.device)

    def q_values(self, b: TokenBatch):
        """→ Q_online (B, T+1, V) with grad, Q_target (B, T+1, V), log G (B, T+1, V), at states s_0 … s_T."""
        start, inputs = b.prompt_len - 1, b.inputs()
        m = self.model
        with torch.no_grad():
            g_hidden = m.trunk(**inputs, adapters=False)[:, start:]
            g_logp = m.behaviour_logprobs(g_hidden)
        if m.separate:
            q_online = self.q(**inputs, start=start)
            q_target = target_q(m, self.target, **inputs, start=start)
        else:  # the trunk is G's and frozen: its hidden state serves Q and Q' too
            q_online = self.q(hidden=g_hidden)
            q_target = target_q(m, self.target, hidden=g_hidden)
        return q_online, q_target, g_logp

    def loss(self, b: TokenBatch) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, mask = self.cfg, b.response_mask
        q_online, q_target, g_logp = self.q_values(b)
        q_taken = q_online[:, :-1].gather(-1, b.responses.unsqueeze(-1)).squeeze(-1)  # (B, T) Q(s_t, a_t)
        allowed_next = allowed_actions(g_logp[:, 1:], cfg.tau)  # (B, T, V) at s_{t+1}
        loss, stats = self._td(q_taken, q_online[:, 1:].detach(), q_target[:, 1:], allowed_next, b.rewards, mask)
        return loss, stats

    # --- state cache (shared trunk)

    def build_cache(self, records: list[LoggedResponse], progress: bool = False) -> None:
        """Cache `records` (those the run will visit) unless the cache would outgrow `cache_max_gb`
        (records × (max_response_tokens + 1) × hidden fp32): then warn and run the trunk every step."""
        if self.cache is None:
            return
        hidden = self.model.lm.config.hidden_size
        size_gb = len({id(r) for r in records}) * (self.cfg.max_response_tokens + 1) * hidden * 4 / 1e9
        if size_gb > self.cfg.cache_max_gb:
            log.warning("state cache of up to %.1f GB > cache_max_gb %.1f: not built, every step runs the trunk",
                        size_gb, self.cfg.cache_max_gb)
            self.cache = None
            return
        self.warm_cache(records, progress)

    @torch.no_grad()
    def warm_cache(self, records: list[LoggedResponse], progress: bool = False) -> None:
        """Cache the trunk's states for every record not cached yet, in batches of similar length
        (little padding). The same records always form the same batches: resumed runs match."""
        if self.cache is None:
            return
        todo = list({id(r): r for r in records if id(r) not in self.cache}.values())
        todo.sort(key=lambda r: (len(repr(r.prompt)) + len(r.response), r.where))
        size = 2 * self.cfg.batch_size
        starts = range(0, len(todo), size)
        for start in tqdm(starts, desc="caching G's states", disable=not progress, leave=False):
            with autocast(self.cfg.precision, self.device):
                self._cache_batch(todo[start : start + size])

    def _cache_batch(self, records: list[LoggedResponse]) -> None:
        b, m = self.batch(records), self.model
        hidden = m.trunk(**b.inputs(), adapters=False)[:, b.prompt_len - 1 :]  # (B, T+1, H)
        logp = m.behaviour_logprobs(hidden[:, 1:])  # (B, T, V) log G at s_1 … s_T
        counts = allowed_actions(logp, self.cfg.tau).sum(-1)  # (B, T) ≥ 1: G's top token always passes
        lengths = b.response_mask.sum(-1).long()
        for i, r in enumerate(records):
            t = int(lengths[i])
            k = int(counts[i, :t].max())
            ids = logp[i, :t].topk(k, dim=-1).indices  # (T, K) the allowed tokens are exactly G's top `count`
            self.cache[id(r)] = CachedRecord(
                hidden=hidden[i, : t + 1].float().clone(), allowed=ids,
                valid=torch.arange(k, device=ids.device)[None, :] < counts[i, :t, None],
                actions=b.responses[i, :t].clone(), reward=float(b.rewards[i]))

    def cached_loss(self, records: list[LoggedResponse]) -> tuple[torch.Tensor, dict[str, float]]:
        """The TD loss of `loss` from cached states: Q only at the taken token (s_t) and at the
        allowed tokens (s_{t+1}), one head forward for both."""
        self.warm_cache(records)
        items = [self.cache[id(r)] for r in records]
        n, t_max = len(items), max(len(c.actions) for c in items)
        k_max, h = max(c.allowed.shape[1] for c in items), items[0].hidden.shape[-1]
        dev = items[0].hidden.device
        hidden = torch.zeros(n, t_max + 1, h, device=dev)
        # per state s_t: [a_t, allowed tokens at s_t] — a_t for t < T, the allowed ones for t ≥ 1
        ids = torch.zeros(n, t_max + 1, 1 + k_max, dtype=torch.long, device=dev)
        valid = torch.zeros(n, t_max, k_max, dtype=torch.bool, device=dev)
        mask = torch.zeros(n, t_max, device=dev)
        for i, c in enumerate(items):
            t, k = len(c.actions), c.allowed.shape[1]
            hidden[i, : t + 1] = c.hidden
            ids[i, :t, 0] = c.actions
            ids[i, 1 : t + 1, 1 : 1 + k] = c.allowed
            valid[i, :t, :k] = c.valid
            mask[i, :t] = 1
        q = self.q(hidden=hidden, actions=ids)  # (B, T+1, 1+K) with grad
        q_taken = q[:, :-1, 0]  # (B, T) Q(s_t, a_t)
        with torch.no_grad():
            q_target_next = target_q(self.model, self.target, hidden=hidden[:, 1:], actions=ids[:, 1:, 1:])
        rewards = torch.tensor([c.reward for c in items], device=dev)
        loss, stats = self._td(q_taken, q[:, 1:, 1:].detach(), q_target_next, valid, rewards, mask)
        return loss, stats

    def _td(self, q_taken, q_online_next, q_target_next, allowed_next, rewards, mask):
        """Huber TD loss of Q(s_t, a_t) (B, T) against the (n-step) double-Q targets, and its statistics.
        The last axis of the `*_next` tensors is the vocabulary or any subset of it holding the allowed tokens."""
        cfg = self.cfg
        token_r, terminal = token_rewards(rewards, mask)
        y = double_q_targets(q_online_next, q_target_next, allowed_next, token_r, terminal, cfg.gamma, cfg.n_step)
        loss = td_loss(q_taken, y, mask, cfg.huber_delta)
        n = mask.sum().clamp(min=1)
        return loss, {
            "loss/td": loss.item(),
            "q/taken": ((q_taken * mask).sum() / n).item(),
            "q/target": ((y * mask).sum() / n).item(),
            "q/first_token": q_taken[:, 0].mean().item(),
            "return/logged": rewards.float().mean().item(),
            "constraint/allowed_tokens": (allowed_next.sum(-1).float() * mask).sum().item() / n.item(),
        }

    def step(self, records: list[LoggedResponse]) -> dict[str, float]:
        self.q.train()
        with autocast(self.cfg.precision, self.device):  # bf16 matmuls where the device runs them fast
            if self.cache is not None:
                loss, stats = self.cached_loss(records)
            else:
                loss, stats = self.loss(self.batch(records))
        self.q.backward_step(loss)
        self.update_target()
        return distributed.mean_across(stats)

    def _online(self) -> list[torch.Tensor]:
        return [p for p in self.q.module.parameters() if p.requires_grad]

    def update_target(self) -> None:
        online = self._online()
        with self.q.gathered(online):
            polyak_update(list(self.target.values()), online, self.cfg.polyak)
