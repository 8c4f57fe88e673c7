"""Per-domain reward mixing: r_i = Σ_c w[domain_i, c] · normalize_c(component_c(i)).

Components: accuracy (the reward-model score, or a reference metric where the prompt has a
reference answer), diversity, efficiency, and constraints — the share of a prompt's instructions
the reply follows (`verifiers`; all-or-nothing when `strict_constraints`), for prompts that carry
constraints; elsewhere it is missing and adds nothing. So a recipe mixes a reward model with
constraint satisfaction by weights, and `components: [constraints]` trains on the rules alone.

Each domain's weights, token budget and reference metric live in `configs/domains/<name>.yaml`
(parsed strictly into `DomainConfig`). Components are brought to one scale before mixing by
a running mean/std per component *and source* (Welford; the first batch uses its own
statistics), so a reward-model score and a [0, 1] length score weigh what their weights say.
Accuracy has two sources on different scales — reward-model scores, and reference metrics
(F1, exact match, ROUGE-L, final number in [0, 1]) — each with its own statistics, so neither's scale depends
on how many of the other a batch holds. One batch may mix domains: each sample uses its own
domain's weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from common.config import from_dict, load_yaml, param
from common.rewards.accuracy import METRICS
from common.rewards.diversity import diversity_scores
from common.rewards.efficiency import length_score
from common.rewards.verifiers import score

COMPONENTS = ("accuracy", "diversity", "efficiency", "constraints")
# running statistics: one per component, and accuracy's reference metrics apart from reward-model scores
NORMS = (*COMPONENTS, "accuracy_reference")
DOMAINS_DIR = Path(__file__).resolve().parents[2] / "configs" / "domains"


@dataclass
class RewardWeights:
    """How much each normalized component counts; they need not sum to 1."""

    accuracy: float = param(0.6, help="reward-model score, or reference metric when a reference exists")
    diversity: float = param(0.3, help="distinct-n across a prompt's samples + non-repetition within")
    efficiency: float = param(0.1, help="response length against the token budget")
    constraints: float = param(1.0, help="share of the prompt's instructions followed (prompts with constraints only)")

    def __post_init__(self):
        for name in COMPONENTS:
            if getattr(self, name) < 0:
                raise ValueError(f"weights.{name} must be ≥ 0, got {getattr(self, name)}")


@dataclass
class DomainConfig:
    """One domain's reward recipe."""

    name: str = param(help="domain tag used in prompt files")
    description: str = param("", help="what the domain is and why its numbers are what they are")
    weights: RewardWeights = param(RewardWeights(), help="component weights")
    token_budget: int = param(256, help="response tokens that cost nothing; 0 efficiency at twice this")
    accuracy_metric: str = param("token_f1", help="token_f1 | exact_match | rouge_l | final_number, used with a reference answer")

    def __post_init__(self):
        if self.token_budget <= 0:
            raise ValueError(f"token_budget must be > 0, got {self.token_budget}")
        if self.accuracy_metric not in METRICS:
            raise ValueError(f"accuracy_metric must be one of {', '.join(METRICS)}, got {self.accuracy_metric!r}")


def load_domains(folder: str | Path = DOMAINS_DIR) -> dict[str, DomainConfig]:
    """Every `<name>.yaml` in `folder`; a file's `name` must match its file name."""
    domains = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        cfg = from_dict(DomainConfig, load_yaml(path), str(path))
        if cfg.name != path.stem:
            raise ValueError(f"{path}: name '{cfg.name}' does not match the file name '{path.stem}'")
        domains[cfg.name] = cfg
    if not domains:
        raise FileNotFoundError(f"no domain configs (*.yaml) in {folder}")
    return domains


@dataclass
class Sample:
    """One generated response, with what the components need."""

    response: str
    domain: str
    group: int  # which prompt it was sampled for (diversity across samples)
    n_tokens: int  # response length in tokens
    reference: str | None = None  # reference answer, if the prompt row has one
    rm_score: float | None = None  # reward-model score (already normalized by its saved stats)
    constraints: list[dict] | None = None  # the prompt's instructions, if it has any


def component_scores(samples: list[Sample], domains: dict[str, DomainConfig],
                     strict_constraints: bool = False) -> dict[str, torch.Tensor]:
    """Raw components, each (B,): accuracy, diversity, efficiency, constraints.

    Accuracy is NaN for a sample with neither a reward-model score nor a reference answer
    (a rule-only run), and constraints for a sample whose prompt has none: a NaN component adds
    nothing to that sample's mixed reward.
    """
    for s in samples:
        if s.domain not in domains:
            raise KeyError(f"unknown domain '{s.domain}' (known: {', '.join(sorted(domains))})")
    accuracy = [
        METRICS[domains[s.domain].accuracy_metric](s.response, s.reference)
        if s.reference is not None
        else s.rm_score if s.rm_score is not None else math.nan  # no judge for this sample
        for s in samples
    ]
    diversity = diversity_scores([s.response for s in samples], [s.group for s in samples])
    efficiency = [length_score(s.n_tokens, domains[s.domain].token_budget) for s in samples]
    constraints = [score(s.response, s.constraints, strict=strict_constraints) if s.constraints else math.nan
                   for s in samples]
    return {
        "accuracy": torch.tensor(accuracy, dtype=torch.float),
        "diversity": torch.tensor(diversity, dtype=torch.float),
        "efficiency": torch.tensor(efficiency, dtype=torch.float),
        "constraints": torch.tensor(constraints, dtype=torch.float),
    }


@dataclass
class RunningNorm:
    """Running mean and variance (Welford, batched): normalize(x) = (x − mean) / std."""

    count: float = 0.0
    mean: float = 0.0
    m2: float = 0.0

    def update(self, x: torch.Tensor) -> None:
        x = x[~torch.isnan(x)]
        n = x.numel()
        if n == 0:
            return
        batch_mean = x.double().mean().item()
        batch_m2 = ((x.double() - batch_mean) ** 2).sum().item()
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta**2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        return math.sqrt(self.m2 / self.count) if self.count > 1 else 0.0

    def normalize(self, x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
        # a component that has never varied carries no signal, and a missing one (NaN) none: both map to 0
        out = (x - self.mean) / self.std if self.std > eps else torch.zeros_like(x)
        return torch.nan_to_num(out, nan=0.0)


@dataclass
class RewardMixer:
    """`rm_saved_stats`: reward-model scores (already z-scored with the statistics saved with the
    reward model) enter as they are, and only the other components use running statistics;
    otherwise every component, reward-model scores included, uses its running mean/std.
    `components` (None = all) keeps only those in the mix, whatever the domains' weights;
    `strict_constraints` scores constraints all-or-nothing instead of the share followed."""

    domains: dict[str, DomainConfig]
    rm_saved_stats: bool = False
    components: tuple[str, ...] | None = None
    strict_constraints: bool = False
    norms: dict[str, RunningNorm] = field(default_factory=lambda: {c: RunningNorm() for c in NORMS})

    def __call__(self, samples: list[Sample]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mixed rewards (B,) and the raw components (for logging per domain)."""
        raw = component_scores(samples, self.domains, self.strict_constraints)
        kept = self.components or COMPONENTS
        weights = torch.tensor(
            [[getattr(self.domains[s.domain].weights, c) if c in kept else 0.0 for c in COMPONENTS] for s in samples]
        )  # (B, 4)
        # (B,) True where accuracy is a reference metric, and where it is a reward-model score that
        # keeps its saved normalization
        is_ref = torch.tensor([s.reference is not None for s in samples])
        as_saved = torch.tensor([self.rm_saved_stats and s.reference is None and s.rm_score is not None for s in samples])
        normalized = []
        for c in COMPONENTS:
            x = raw[c]
            if c == "accuracy":
                ref_norm, rm_norm = self.norms["accuracy_reference"], self.norms["accuracy"]
                ref_norm.update(x[is_ref])
                rm_norm.update(x[~is_ref & ~as_saved])
                normalized.append(torch.where(is_ref, ref_norm.normalize(x), torch.where(as_saved, x, rm_norm.normalize(x))))
            else:
                self.norms[c].update(x)
                normalized.append(self.norms[c].normalize(x))
        mixed = (weights * torch.stack(normalized, dim=1)).sum(dim=1)  # (B,)
        return mixed, raw

    def state_dict(self) -> dict:
        return {c: vars(n).copy() for c, n in self.norms.items()}

    def load_state_dict(self, state: dict) -> None:
        # a checkpoint from before accuracy_reference existed starts that one afresh
        self.norms = {c: RunningNorm(**state[c]) if c in state else RunningNorm() for c in NORMS}
