"""The PPO stage's options: one dataclass, filled from `configs/ppo/*.yaml` + command line.

The dataclass defaults follow the design (KL β = 0.2, entropy 0.01, γ = 0.99, λ = 0.95, clip 0.2); a
recipe sets what it tunes — the default CPU recipe uses β 0.1 (configs/ppo/default.yaml, docs/bench).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import param
from common.data.prompts import PromptSource
from common.models.lora import LoraSettings
from common.pipeline import default_model
from common.runs import RunOptions


@dataclass
class GoldStop:
    """Stop when the held-out gold reward has fallen while the proxy rose (Gao et al. 2022's picture of
    overoptimisation): `patience` steps without a new best gold score, their mean gold score more than
    `min_delta` under the best, and their mean proxy score above the proxy's at the best step."""

    patience: int = param(5, help="steps after the best gold score before stopping")
    min_delta: float = param(0.0, help="how far (normalised gold score) the recent mean must fall under the best")

    def __post_init__(self):
        if self.patience < 1 or self.min_delta < 0:
            raise ValueError(f"gold_stop: patience must be ≥ 1 and min_delta ≥ 0, got {self.patience}, {self.min_delta}")


@dataclass
class PPOStageConfig(RunOptions):
    """PPO against a reward model and rule-based components, with a KL penalty to the reference.

    Shared run options (run_name, output_root, resume, save_steps, seed, precision, trackers,
    deepspeed) come from `common.runs.RunOptions`. With DeepSpeed, prompts_per_step and
    mini_batch_size are global: each of the N ranks takes 1/N of them.
    """

    output_root: str = param("runs/ppo", help="parent folder of run folders")
    save_steps: int = param(5, help="checkpoint every N steps")

    # --- models
    policy: str = param(default_model("sft"), help="policy to train (SFT output); also the frozen reference")
    reward_model: str | list[str] | None = param(
        default_model("reward_model"), help="reward model folder; an ensemble folder (make rm ENSEMBLE=n) or a list of "
        "folders = an ensemble combined by reward_combine; None = rule-based components only"
    )
    reward_combine: Literal["mean", "min", "mean_minus_std"] = param(
        "mean", help="an ensemble's score from its members' (each normalised by its saved statistics): mean, min (the "
        "worst case) or mean − reward_combine_coef · std over members (Coste et al. 2023)"
    )
    reward_combine_coef: float = param(1.0, help="mean_minus_std: how much the members' disagreement costs")
    reward_sanity_floor: float | None = param(
        None, help="refuse to start when a kind of the reward model's sanity suite (model/sanity.json, or the suite run "
        "on these prompts' references) passes less often than this, e.g. 0.8; None = warn only (under 0.8)"
    )
    gold_reward_model: str | list[str] | None = param(
        None, help="a held-out reward model (folder, ensemble or list) that scores each step's replies once, not "
        "optimised: gold/score is logged beside proxy/score; None = none"
    )
    gold_stop: GoldStop | None = param(
        None, help="{patience: k, min_delta: d}: stop when the gold score has fallen for k steps while the proxy rose, "
        "and keep the best-by-gold policy as the final model (needs gold_reward_model); None = never"
    )
    advantage_estimator: Literal["gae", "grpo", "rloo", "reinforce_pp", "reinforce_baseline"] = param(
        "gae",
        help="gae: PPO with a critic and GAE; grpo: reward minus its prompt group's mean, over the group's std; "
        "rloo: reward minus the mean of the prompt's other samples; reinforce_pp: REINFORCE++ (per-token KL in the "
        "reward, return, whitened over the batch); reinforce_baseline: REINFORCE++-baseline (the group's mean score "
        "subtracted first, then as reinforce_pp). All but gae build no critic and need samples_per_prompt ≥ 2 (the "
        "table in ppo/estimators.py)",
    )
    grpo_scale: bool = param(True, help="grpo: divide by the group's std (false = 'Dr GRPO': centre only; pair it with "
                             "loss_agg_mode: seq-mean-token-sum-norm)")
    loss_agg_mode: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"] = param(
        "token-mean", help="how per-token losses become one: token-mean (every token of the batch alike), "
        "seq-mean-token-mean (GRPO's paper), seq-mean-token-sum, seq-mean-token-sum-norm (Dr GRPO: token sums over "
        "max_new_tokens, a constant)"
    )
    policy_ratio: Literal["token", "sequence"] = param(
        "token", help="token: PPO's per-token ratio π/π_old; sequence: GSPO's, the geometric mean over the reply, "
        "clipped once per reply (use a small cliprange, e.g. 3e-4 / cliprange_high 4e-4)"
    )
    dynamic_sampling: int | None = param(
        None, help="DAPO's dynamic sampling: roll out this many times prompts_per_step prompts and keep up to "
        "prompts_per_step groups whose scores are not all equal (those carry no group advantage); None = off"
    )
    overlong_buffer: int | None = param(
        None, help="DAPO's soft overlong penalty: replies within this many tokens of max_new_tokens lose up to 1 "
        "(linearly; 1 at the limit); None = off"
    )
    value_model: Literal["separate", "policy_head"] = param(
        "separate", help="separate critic model (InstructGPT, DeepSpeed-Chat), or a value head on the policy's trunk"
    )
    critic: str | None = param(None, help="separate critic's init; None = the reward model (InstructGPT), else a model spec")
    finetune: Literal["lora", "full", "qlora"] = param(
        "lora", help="LoRA policy: the reference is the same weights, adapters off; qlora: the same on a frozen 4-bit "
        "NF4 base (bitsandbytes); full: all weights, the reference a frozen copy")
    lora: LoraSettings = param(
        LoraSettings(dropout=0.0), help="policy LoRA shape (no dropout by default: π_old and π must be the same function)"
    )
    critic_freeze_layers: int = param(0, help="freeze the critic's embeddings and this many lowest layers")
    prefix_cache: bool = param(
        True, help="run the frozen layers below the lowest trained one once per rollout batch (exact; off under ZeRO-3)"
    )
    on_policy_shortcut: bool = param(
        True, help="when each batch makes exactly one optimizer step (ppo_epochs 1, one mini-batch), the KL is not in "
        "the reward and there is no value head: log π_old is the update's own forward pass, detached (ratio 1, as TRL's "
        "GRPO does), so the scoring pass skips the policy. false = always recompute it"
    )

    # --- data
    prompts: list[PromptSource] = param([], help="prompt sources")
    domains_dir: str = param("configs/domains", help="folder of per-domain reward configs")
    max_prompt_tokens: int = param(256, help="prompts longer than this are skipped with a warning")

    # --- rollout
    prompts_per_step: int = param(8, help="prompts sampled per PPO step")
    samples_per_prompt: int = param(2, help="responses sampled per prompt")
    max_new_tokens: int = param(48, help="response length limit")
    temperature: float = param(1.0, help="sampling temperature")
    top_k: int = param(0, help="top-k sampling (0 = off)")
    top_p: float = param(1.0, help="nucleus sampling (1 = off)")
    compile_generation: bool | None = param(
        None,
        help="decode with a static KV cache and a torch.compile'd decoding step (CUDA graphs on a GPU); prompts are "
        "left-padded to a multiple of 64 tokens so shapes repeat. None = on for CUDA without ZeRO-3. Compiling takes "
        "about a minute once per batch shape; on a CPU it gains ~15% for that cost",
    )

    shared_prefill: bool = param(
        True, help="run each prompt's pass once for its samples_per_prompt samples and share its KV cache (the rows "
        "of one prompt are identical: exact up to float rounding; not with compile_generation's static cache)"
    )
    rollout_precision: Literal["same", "bf16"] = param(
        "same", help="bf16 = sample from a bf16 copy of the policy (half the bytes streamed per decoded token; "
        "≈ 1.9× faster decoding on an AVX512-BF16 CPU, docs/bench/rollout-precision-2026-12-07.md), refreshed from the "
        "trained weights before each rollout; π_old is still scored in the training precision and the difference "
        "corrected by rollout_correction. same = sample from the trained model itself"
    )
    rollout_correction: Literal["token_truncate", "token_mask", "sequence_truncate", "sequence_mask"] | None = param(
        "token_truncate", help="importance weights π_old/π_rollout on the policy loss when the sampler differs "
        "(rollout_precision: bf16): per token or per reply, truncated at rollout_correction_cap or dropped above it "
        "(verl's and TRL's correction for vLLM rollouts); None = no correction (the mismatch is still logged)"
    )
    rollout_correction_cap: float = param(2.0, help="the importance weights' cap C (≥ 1)")

    # --- reward and KL
    kl_coef: float = param(0.2, help="initial β of the KL penalty")
    kl_estimator: Literal["k1", "k2", "k3"] | None = param(
        None, help="per-token KL estimator; None = k1 in the reward, k3 as a loss term"
    )
    kl_in_reward: bool | None = param(
        None, help="KL as a per-token reward penalty (True) or as a loss term (False: k2 pulls along ∇KL(π‖π_ref), "
        "k3 along ∇KL(π_ref‖π); k1 has no pull there and is refused). None = a loss term for grpo (as GRPO does), "
        "in the reward otherwise"
    )
    adaptive_kl: bool = param(False, help="adapt β towards target_kl")
    target_kl: float = param(6.0, help="adaptive controller's target KL per response")
    kl_horizon: int = param(10000, help="adaptive controller's horizon, in responses")
    reward_norm: Literal["running", "reward_model"] = param(
        "running",
        help="reward-model scores: running mean/std (like the other components), or the mean/std saved with the reward model",
    )
    reward_clip: float = param(10.0, help="clip normalized scores to ±this")
    reward_components: list[Literal["accuracy", "diversity", "efficiency", "constraints"]] | None = param(
        None, help="which components enter the mixed reward, with their domains' weights; None = all. [constraints] "
        "trains on instruction-following rules alone (prompts with `constraints`: configs/ppo/grpo.yaml)"
    )
    constraint_scoring: Literal["fraction", "strict"] = param(
        "fraction", help="a reply's constraints score: the share of its prompt's instructions followed (open-instruct's "
        "rule), or strict: 1 only when all are"
    )
    missing_eos_penalty: float | None = param(1.0, help="subtracted from the score of a response without EOS")

    # --- PPO update
    gamma: float | None = param(
        None, help="discount; None = 0.99 for gae, 1 for the REINFORCE++ estimators (with a reward at the end only, "
        "γ < 1 would be a hidden length penalty)"
    )
    lam: float = param(0.95, help="GAE λ")
    whiten_advantages: bool = param(True, help="gae: normalize advantages per batch (the REINFORCE++ estimators "
                                    "always whiten; the group estimators never do — ignored for them)")
    cliprange: float = param(0.2, help="policy ratio clip ε (the lower one when cliprange_high is set)")
    cliprange_high: float | None = param(None, help="DAPO's clip-higher: the upper clip ε_high (e.g. 0.28); None = cliprange")
    cliprange_value: float = param(0.2, help="value clip ε")
    vf_coef: float = param(0.5, help="value-loss weight (separate critic: scales its loss)")
    entropy_coef: float = param(0.01, help="entropy bonus")
    ppo_epochs: int = param(2, help="passes over each rollout batch")
    mini_batch_size: int = param(8, help="responses per optimizer step")
    policy_lr: float = param(1e-5, help="policy learning rate")
    critic_lr: float = param(5e-5, help="critic learning rate")
    max_grad_norm: float = param(1.0, help="gradient clipping norm")
    gradient_checkpointing: bool = param(
        False, help="recompute policy and critic activations in the backward pass: far less memory, ~30% more time"
    )

    # --- run
    steps: int = param(20, help="PPO steps (rollout + update)")

    @property
    def uses_critic(self) -> bool:
        """Only GAE learns a value function; the group and REINFORCE++ baselines need none."""
        return self.advantage_estimator == "gae"

    def __post_init__(self):
        for key in ("prompts_per_step", "samples_per_prompt", "mini_batch_size", "max_new_tokens", "ppo_epochs", "steps",
                    "save_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be ≥ 1, got {getattr(self, key)}")
        if self.mini_batch_size > self.prompts_per_step * self.samples_per_prompt:
            raise ValueError("mini_batch_size must be ≤ prompts_per_step × samples_per_prompt")
        if not 0 < self.cliprange < 1:
            raise ValueError(f"cliprange must be in (0, 1), got {self.cliprange}")
        if self.kl_coef < 0 or self.entropy_coef < 0:
            raise ValueError("kl_coef and entropy_coef must be ≥ 0")
        if self.kl_in_reward is None:
            self.kl_in_reward = self.advantage_estimator != "grpo"
        if self.kl_estimator is None:
            self.kl_estimator = "k1" if self.kl_in_reward else "k3"
        if self.gamma is None:
            self.gamma = 0.99 if self.advantage_estimator == "gae" else 1.0
        if self.dynamic_sampling is not None and (self.dynamic_sampling < 1 or self.uses_critic):
            raise ValueError("dynamic_sampling compares a prompt's samples: it needs a critic-free estimator and a "
                             f"value ≥ 1, got {self.dynamic_sampling} with {self.advantage_estimator}")
        if self.overlong_buffer is not None and not 0 < self.overlong_buffer <= self.max_new_tokens:
            raise ValueError(f"overlong_buffer must be in (0, max_new_tokens = {self.max_new_tokens}], "
                             f"got {self.overlong_buffer}")
        if self.cliprange_high is not None and not 0 < self.cliprange_high < 10:
            raise ValueError(f"cliprange_high must be in (0, 10), got {self.cliprange_high}")
        if not self.uses_critic and self.samples_per_prompt < 2:
            raise ValueError(f"advantage_estimator: {self.advantage_estimator} compares the samples of one prompt: "
                             f"samples_per_prompt must be ≥ 2, got {self.samples_per_prompt}")
        if self.gold_stop is not None and not self.gold_reward_model:
            raise ValueError("gold_stop needs gold_reward_model: the held-out reward model whose fall stops the run")
        if self.reward_sanity_floor is not None and not 0 < self.reward_sanity_floor <= 1:
            raise ValueError(f"reward_sanity_floor must be in (0, 1] (or null), got {self.reward_sanity_floor}")
        if self.rollout_correction_cap < 1:
            raise ValueError(f"rollout_correction_cap must be ≥ 1, got {self.rollout_correction_cap}")
        if self.rollout_precision != "same" and self.finetune == "qlora":
            raise ValueError("rollout_precision: bf16 needs a LoRA or full policy: a qlora policy's base is 4-bit "
                             "already (set rollout_precision: same)")
        if self.reward_combine_coef < 0:
            raise ValueError(f"reward_combine_coef must be ≥ 0, got {self.reward_combine_coef}")
        if not self.kl_in_reward and self.kl_estimator == "k1":
            raise ValueError("kl_estimator: k1 as a loss term (kl_in_reward: false) has zero expected gradient — it "
                             "never pulls the policy towards the reference; use k3 (∇KL(π_ref‖π), GRPO's choice) or k2 "
                             "(∇KL(π‖π_ref)), or keep kl_in_reward: true")
