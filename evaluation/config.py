"""The evaluation stage's options: one dataclass, filled from `configs/evaluation/*.yaml` + command line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import param
from common.data.prompts import PromptSource
from common.pipeline import default_model
from common.runs import RunOptions


@dataclass
class PolicySpec:
    """One policy to compare: a name for the tables and a model spec."""

    name: str = param(help="label in tables and files, e.g. sft, ppo")
    model: str = param(help="model spec: a run's model/ folder (SFT, PPO, DPO: full or LoRA; a BCQ model "
                            "decodes with its constrained decoding), an export's folder or .gguf file (dequantized "
                            "to fp32), default, tiny-random, or a hub id")
    tau: float | None = param(None, help="BCQ models only: batch constraint τ for decoding (None = the trained τ)")
    decoding: Literal["sample", "greedy"] | None = param(
        None, help="None = the stage's decoding for a language model, greedy on Q for a BCQ model (Q is no distribution)"
    )


@dataclass
class Decoding:
    """A second reading of every policy at another decoding: what a deployment would show."""

    name: str = param(help="label in tables and files, e.g. greedy, t0.7")
    decoding: Literal["sample", "greedy"] = param("greedy", help="sampling or greedy")
    temperature: float = param(1.0, help="sampling temperature (decoding: sample)")


@dataclass
class Judges:
    """Which judges run; each is optional."""

    reward_model: bool = param(True, help="reward-model score, win-rate over the baseline, length-controlled win-rate")
    mixed_reward: bool = param(True, help="the per-domain mixed reward and its components (common/rewards)")
    kl: bool = param(True, help="KL to the reference policy on each policy's own samples")
    constraints: bool = param(True, help="instruction following by rules, where prompts carry constraints: IFEval's "
                              "prompt- and constraint-level pass rates, strict and loose")


@dataclass
class EvalConfig(RunOptions):
    """Compare policies against a baseline on held-out prompts: reward model, mixed reward, length
    and KL, with 95% bootstrap intervals over prompts.

    Shared run options (run_name, output_root, overwrite, seed, precision, trackers) come from
    `common.runs.RunOptions`; checkpoints do not apply (a stopped evaluation starts again). With
    several processes (`make eval NPROC=N`) each one samples and scores its share of the prompts.
    """

    output_root: str = param("runs/evaluation", help="parent folder of run folders")

    # --- what is compared
    policies: list[PolicySpec] = param([], help="the policies to compare (the baseline among them)")
    baseline: str = param("", help="name of the policy the others are compared with")
    kl_reference: str | None = param(None, help="policy name or model spec the KL is measured to; None = the baseline")
    reward_model: str | list[str] | None = param(
        default_model("reward_model"), help="reward model folder (the judge); an ensemble folder or a list = an "
        "ensemble judge; None = no reward-model judge"
    )
    reward_combine: Literal["mean", "min", "mean_minus_std"] = param(
        "mean", help="several reward models (a list or an ensemble folder): each normalised by its saved statistics, "
        "then their mean, min (the worst case) or mean − reward_combine_coef · std over members"
    )
    reward_combine_coef: float = param(1.0, help="mean_minus_std: how much the members' disagreement costs")
    domains_dir: str = param("configs/domains", help="folder of per-domain reward configs")

    # --- prompts
    prompts: list[PromptSource] = param([], help="held-out prompt sets: {prompt, domain, reference?} rows")
    max_prompts: int | None = param(None, help="use at most this many prompts (a seeded random subset); None = all")
    max_prompt_tokens: int = param(256, help="prompts longer than this are skipped with a warning")

    # --- sampling
    samples_per_prompt: int = param(2, help="replies per prompt and policy (compared by sample index)")
    decoding: Literal["sample", "greedy"] = param("sample", help="sampling, or greedy (then samples_per_prompt must be 1)")
    temperature: float = param(1.0, help="sampling temperature (also divides the logits of the KL passes)")
    top_p: float = param(1.0, help="nucleus sampling (1 = off); it decides which replies are drawn, the KL uses the "
                         "untruncated distributions")
    max_new_tokens: int = param(64, help="reply length limit")
    batch_size: int = param(32, help="prompts per generate call (each with all its samples)")
    also_decode: list[Decoding] = param(
        [], help="more readings, one reply per prompt and policy each (e.g. [{name: greedy, decoding: greedy}, {name: "
        "t0.7, decoding: sample, temperature: 0.7}]): every judge but the KL runs on them too, reported beside the main "
        "decoding (a win at T 1 can vanish at the decoding a deployment uses)")

    # --- judges
    judges: Judges = param(Judges(), help="which judges run")
    tie_tolerance: float = param(0.0, help="reward-model scores closer than this are a tie (½ a win)")
    bootstrap_resamples: int = param(2000, help="bootstrap resamples for every interval")

    # --- outputs
    html_prompts: int | None = param(None, help="prompts shown in report.html (None = all)")
    to_annotation: str | None = param(
        None, help="annotation database (file or URL): also load the replies there as blind comparison tasks"
    )

    def __post_init__(self):
        for key in ("samples_per_prompt", "max_new_tokens", "batch_size", "bootstrap_resamples", "max_prompt_tokens"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be ≥ 1, got {getattr(self, key)}")
        if self.decoding == "greedy" and self.samples_per_prompt != 1:
            raise ValueError("decoding: greedy gives one reply per prompt: set samples_per_prompt: 1")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("temperature must be > 0 and top_p in (0, 1]")
        labels = [d.name for d in self.also_decode]
        if len(set(labels)) != len(labels) or any(not n or not n.replace(".", "").replace("-", "").replace("_", "").isalnum()
                                                   for n in labels):
            raise ValueError(f"also_decode: names must be unique words (letters, digits, . - _), got {labels}")
        for d in self.also_decode:
            if d.temperature <= 0:
                raise ValueError(f"also_decode: {d.name}'s temperature must be > 0, got {d.temperature}")
        if len(self.policies) < 2:
            raise ValueError("policies: list at least two (the baseline and one to compare with it)")
        names = [p.name for p in self.policies]
        if len(set(names)) != len(names):
            raise ValueError(f"policies: names must be unique, got {names}")
        if set(names) & set(labels):
            shared = ", ".join(sorted(set(names) & set(labels)))
            raise ValueError(f"also_decode: a reading may not share a policy's name ({shared})")
        if self.baseline not in names:
            raise ValueError(f"baseline '{self.baseline}' is not among the policies ({', '.join(names)})")
        if self.deepspeed:
            raise ValueError("deepspeed: the evaluation stage needs no DeepSpeed config — with several processes "
                             "each one loads the models whole and takes its share of the prompts")
        if self.judges.reward_model and not self.reward_model:
            raise ValueError("judges.reward_model is on but reward_model is null: name a reward model folder, "
                             "or set judges.reward_model: false")
