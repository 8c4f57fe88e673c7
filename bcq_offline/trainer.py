"""Offline BCQ training in small steps: batch → q_values → targets → update → target update.

Layout of a batch: left-padded prompts (P tokens) then right-padded responses (T tokens).
The state before response token t is read at sequence position P − 1 + t, so the T + 1
states s_0 … s_T of a response are positions P − 1 … P + T − 1 (`start = P − 1`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bcq_offline.config import BCQStageConfig
from bcq_offline.data import LoggedResponse
from bcq_offline.losses import allowed_actions, double_q_targets, polyak_update, td_loss, token_rewards
from bcq_offline.model import BCQModel, target_q, trainable_copy
from common import distributed
from common.engines import Trainable


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


class BCQTrainer:
    def __init__(self, cfg: BCQStageConfig, model: BCQModel, tokenizer, ds: dict | None = None):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.device = distributed.device()
        self.q = Trainable(model, cfg.learning_rate, cfg.max_grad_norm, ds)
        with self.q.gathered(self._online()):  # whole tensors under ZeRO-3
            self.target = trainable_copy(self.q.module)  # Q' starts equal to Q

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
            with torch.no_grad():
                q_target = F.linear(g_hidden, self.target["q_head.weight"], self.target["q_head.bias"]).float()
        return q_online, q_target, g_logp

    def loss(self, b: TokenBatch) -> tuple[torch.Tensor, dict[str, float]]:
        cfg, mask = self.cfg, b.response_mask
        q_online, q_target, g_logp = self.q_values(b)
        q_taken = q_online[:, :-1].gather(-1, b.responses.unsqueeze(-1)).squeeze(-1)  # (B, T) Q(s_t, a_t)
        rewards, terminal = token_rewards(b.rewards, mask)
        allowed_next = allowed_actions(g_logp[:, 1:], cfg.tau)  # (B, T, V) at s_{t+1}
        y = double_q_targets(q_online[:, 1:].detach(), q_target[:, 1:], allowed_next, rewards, terminal, cfg.gamma)
        loss = td_loss(q_taken, y, mask, cfg.huber_delta)
        n = mask.sum().clamp(min=1)
        stats = {
            "loss/td": loss.item(),
            "q/taken": ((q_taken * mask).sum() / n).item(),
            "q/target": ((y * mask).sum() / n).item(),
            "q/first_token": q_taken[:, 0].mean().item(),
            "return/logged": b.rewards.mean().item(),
            "constraint/allowed_tokens": (allowed_next.sum(-1).float() * mask).sum().item() / n.item(),
        }
        return loss, stats

    def step(self, records: list[LoggedResponse]) -> dict[str, float]:
        self.q.train()
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
