"""The offline BCQ stage's options: one dataclass, filled from `configs/bcq_offline/*.yaml` + command line.

Discrete BCQ (Fujimoto et al., 2019) over tokens: state = prompt + response so far, action = the
next token, the logged response's reward on its last token. G, the behaviour model, is the
SFT model; Q is a head over the vocabulary on a transformer trunk — G's own frozen trunk
(`q_trunk: shared`, cheapest) or LoRA adapters of its own on the same base (`separate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import param
from common.models.lora import LoraSettings
from common.pipeline import default_model
from common.runs import RunOptions


@dataclass
class LoggedSource:
    """One file of logged responses and its share of the mix."""

    path: str = param(help="JSONL/.jsonl.gz or datasets folder: logged rows, PPO samples.jsonl, or preference rows")
    format: Literal["auto", "logged", "ppo_samples", "preferences"] = param("auto", help="row shape")
    weight: float = param(1.0, help="share of this file's records: 0.5 = a random half, 2.0 = twice")


@dataclass
class BCQStageConfig(RunOptions):
    """Offline batch-constrained Q-learning from logged (prompt, response, reward)."""

    output_root: str = param("runs/bcq", help="parent folder of run folders")
    save_steps: int = param(50, help="checkpoint every N steps")

    # --- models
    model: str = param(default_model("sft"), help="behaviour model G (the SFT output) and the Q trunk's base")
    q_trunk: Literal["shared", "separate"] = param(
        "shared", help="Q head on G's frozen trunk (shared), or on LoRA adapters of its own over the same base (separate)"
    )
    lora: LoraSettings = param(LoraSettings(dropout=0.0), help="LoRA shape of the separate trunk and of behaviour cloning")
    behaviour_steps: int = param(
        0,
        help="behaviour cloning: fine-tune G on the logged responses (imitation loss) for this many steps first; 0 = G as given",
    )
    behaviour_lr: float = param(1e-4, help="behaviour cloning learning rate (LoRA, merged into G afterwards)")
    q_head: Literal["full", "bilinear"] = param(
        "full",
        help="full: a weight row per token (V × H); bilinear: Q(s, a) = e_a·(M h) + b_a on G's frozen output "
        "embeddings (H × H + V): what is learned for a token carries over to tokens G embeds alike",
    )
    q_init_scale: float = param(
        0.01, help="Q head starts as this × G's LM head (0 = zeros): greedy Q first agrees with greedy G"
    )

    # --- data and rewards
    data: list[LoggedSource] = param([], help="logged responses")
    reward_source: Literal["data", "reward_model", "mixer"] = param(
        "data",
        help="the rewards in the rows; re-scored by reward_model (normalized by its saved statistics); or recomputed "
        "with the per-domain mixer (accuracy = the reward model's score if reward_model is set, else the row's reward)",
    )
    reward_model: str | list[str] | None = param(
        None, help="reward model folder (re-scoring and evaluation); an ensemble folder or a list = an ensemble")
    reward_combine: Literal["mean", "min", "mean_minus_std"] = param(
        "mean", help="several reward models (a list or an ensemble folder): each normalised by its saved statistics, "
        "then their mean, min (the worst case) or mean − reward_combine_coef · std over members"
    )
    reward_combine_coef: float = param(1.0, help="mean_minus_std: how much the members' disagreement costs")
    domains_dir: str = param("configs/domains", help="per-domain reward configs (the mixed reward in evaluation)")
    max_prompt_tokens: int = param(256, help="records with longer prompts are skipped with a warning")
    max_response_tokens: int = param(128, help="responses are cut to this many tokens (the reward stays on the last)")
    eval_fraction: float = param(0.1, help="share of prompts held out for evaluation (split by prompt)")
    eval_prompts: int = param(32, help="at most this many held-out prompts are decoded in the final evaluation")
    eval_taus: list[float] = param([0.1, 0.3, 0.6], help="τ sweep of the final evaluation")
    eval_batch_size: int = param(32, help="prompts decoded together in the evaluation (decoding is memory-bound: wide is cheap)")

    # --- Q-learning
    gamma: float = param(1.0, help="discount; 1 = the reward at the end counts fully at every token")
    tau: float = param(0.3, help="batch constraint: only tokens with G(a|s) / max G ≥ τ, τ in (0, 1)")
    n_step: int = param(
        1, help="TD targets look n tokens ahead along the logged response (n-step double-Q); 1 = one-step BCQ, "
        "≥ the response length = the logged return (no bootstrap)"
    )
    polyak: float = param(0.005, help="target network: θ' ← (1 − rate) θ' + rate θ after every update")
    huber_delta: float = param(1.0, help="Huber loss threshold")
    learning_rate: float = param(1e-4, help="AdamW learning rate for Q")
    max_grad_norm: float = param(1.0, help="gradient clipping norm")
    batch_size: int = param(8, help="responses per update (global under DeepSpeed)")
    steps: int = param(200, help="updates")
    cache_states: bool = param(
        True, help="shared trunk: compute G's hidden states and allowed tokens once per record and reuse them "
        "(same targets; a step then costs a head forward, not a trunk pass). Off under ZeRO-3"
    )
    cache_max_gb: float = param(
        8.0, help="largest state cache per process (records × (max_response_tokens + 1) × hidden × 4 bytes); "
        "a larger one is not built and every step runs the trunk"
    )

    # --- decoding
    decode: Literal["greedy", "sample"] = param("greedy", help="argmax of Q over allowed tokens, or softmax(Q/T) sampling")
    decode_temperature: float = param(1.0, help="T for decode = sample")
    max_new_tokens: int = param(64, help="response length limit when decoding")

    def __post_init__(self):
        if not 0 < self.tau < 1:
            raise ValueError(f"tau must lie in (0, 1), got {self.tau}")
        if not 0 < self.polyak <= 1:
            raise ValueError(f"polyak must lie in (0, 1], got {self.polyak}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma}")
        if not 0 <= self.eval_fraction < 1:
            raise ValueError(f"eval_fraction must lie in [0, 1), got {self.eval_fraction}")
        if self.behaviour_steps < 0:
            raise ValueError(f"behaviour_steps must be ≥ 0, got {self.behaviour_steps}")
        for key in ("batch_size", "steps", "save_steps", "max_new_tokens", "max_response_tokens", "n_step",
                    "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be ≥ 1, got {getattr(self, key)}")
        if self.reward_source == "reward_model" and not self.reward_model:
            raise ValueError("reward_source: reward_model needs reward_model set")
        for tau in self.eval_taus:
            if not 0 < tau < 1:
                raise ValueError(f"eval_taus: every τ must lie in (0, 1), got {tau}")
        if self.decode_temperature <= 0:
            raise ValueError("decode_temperature must be > 0")
