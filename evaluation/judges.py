"""The judges: reward model, per-domain mixed reward, length and KL — each reply scored, then
every figure summarised per policy and per comparison with the baseline, with the signs of a
hollow policy (`evaluation.hollow`) and a warning for a win that comes with them.

Comparisons are paired by (prompt, sample index); intervals are 95% bootstrap intervals over
prompts (`common.stats`), so a prompt with several samples counts once.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from tqdm.auto import tqdm

from common.data.prompts import Prompt
from common.rewards.mixer import COMPONENTS, RewardMixer, Sample
from common.stats import (
    bootstrap_ci,
    cluster_means,
    length_controlled_win_rate,
    outcome,
    shorter_preferred,
    spearman,
    win_rate,
)
from evaluation import instructions
from evaluation.config import EvalConfig
from evaluation.hollow import hollow_figures, warning, won
from evaluation.policies import Reply


def score_reward_model(scorer, replies: list[Reply], prompts: list[Prompt], batch_size: int) -> None:
    """`scores["rm"]`: the reward model's score, z-scored by the statistics saved with it."""
    ordered = sorted(replies, key=lambda r: len(r.tokens))  # batches of similar lengths: less padding
    for start in tqdm(range(0, len(ordered), batch_size), desc="reward model", leave=False):
        part = ordered[start : start + batch_size]
        scores = scorer([prompts[r.prompt].messages for r in part], [r.text for r in part], batch_size=batch_size,
                        normalize=True)
        for r, s in zip(part, scores.tolist()):
            r.scores["rm"] = s


def score_mixed(replies: list[Reply], prompts: list[Prompt], domains) -> None:
    """`scores["mixed"]` and the raw components, with PPO's own mixer (`common/rewards`): one
    normalisation over every policy's replies, so the policies are measured on one scale.
    Accuracy is the reward-model score, or the domain's reference metric where a prompt has a
    reference answer; diversity is measured among a policy's samples for a prompt."""
    groups: dict[tuple[str, int], int] = {}
    samples = [
        Sample(response=r.text, domain=prompts[r.prompt].domain, group=groups.setdefault((r.policy, r.prompt), len(groups)),
               n_tokens=r.length, reference=prompts[r.prompt].reference, rm_score=r.scores.get("rm"),
               constraints=prompts[r.prompt].constraints)
        for r in replies
    ]
    mixed, raw = RewardMixer(domains)(samples)
    for i, r in enumerate(replies):
        r.scores["mixed"] = float(mixed[i])
        for c in COMPONENTS:
            r.scores[c] = float(raw[c][i])


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------


def _per_prompt_ci(replies: list[Reply], value, seed: int, resamples: int) -> dict[str, float]:
    """Mean of `value(reply)` with an interval over prompts (NaN values left out)."""
    pairs = [(value(r), r.prompt) for r in replies]
    pairs = [(v, p) for v, p in pairs if v is not None and not math.isnan(v)]
    if not pairs:
        return bootstrap_ci([], seed)
    values, where = zip(*pairs)
    return bootstrap_ci(cluster_means(values, where), seed, resamples)


def policy_summary(replies: list[Reply], cfg: EvalConfig, has_kl: bool) -> dict:
    seed, n = cfg.seed, cfg.bootstrap_resamples
    out = {
        "replies": len(replies),
        "length": _per_prompt_ci(replies, lambda r: float(r.length), seed, n),
        "eos_rate": _per_prompt_ci(replies, lambda r: float(r.ended), seed, n),
        "empty_rate": float(np.mean([not r.text for r in replies])),
    }
    for key, name in (("rm", "reward_model"), ("mixed", "mixed_reward")):
        if any(key in r.scores for r in replies):
            out[name] = _per_prompt_ci(replies, lambda r, k=key: r.scores.get(k), seed, n)
    if any("accuracy" in r.scores for r in replies):
        out["components"] = {c: _per_prompt_ci(replies, lambda r, c=c: r.scores.get(c), seed, n) for c in COMPONENTS}
    if has_kl:
        out["kl"] = _per_prompt_ci(replies, kl_term, seed, n)
    return out


def kl_term(r: Reply) -> float:
    """One reply's term of the KL column: Σ_t [log π_T(y_t | ·) − log π_ref,T(y_t | ·)] over its
    tokens (EOS included), π_T and π_ref,T the temperature-T softmax distributions of the policy
    and of the reference model (T = the stage's `temperature`), untruncated by top-p. Its mean over
    a policy's replies — a Monte-Carlo estimate of KL(π_T ‖ π_ref,T) when the replies are drawn from
    π_T — is the quantity PPO's KL penalty controls. Decoding (greedy, top-p) only decides which
    replies are drawn; every policy kind records the same log π_T (`evaluation.policies`)."""
    return r.logprob - r.ref_logprob


def paired(replies: list[Reply], policy: str, baseline: str) -> list[tuple[Reply, Reply]]:
    """(policy's reply, baseline's reply) for every (prompt, sample index) both answered."""
    base = {(r.prompt, r.sample): r for r in replies if r.policy == baseline}
    return [(r, base[(r.prompt, r.sample)]) for r in replies if r.policy == policy and (r.prompt, r.sample) in base]


def comparison(pairs: list[tuple[Reply, Reply]], prompts: list[Prompt], cfg: EvalConfig) -> dict:
    """One policy against the baseline: win-rates (raw and length-controlled) overall and per
    domain by the reward model, the mixed-reward win-rate, and paired differences."""
    seed, n = cfg.seed, cfg.bootstrap_resamples
    where = [a.prompt for a, _ in pairs]
    out: dict = {
        "pairs": len(pairs),
        "length_difference": bootstrap_ci(cluster_means([a.length - b.length for a, b in pairs], where), seed, n),
    }
    if pairs and "rm" in pairs[0][0].scores:
        wins = [outcome(a.scores["rm"], b.scores["rm"], cfg.tie_tolerance) for a, b in pairs]
        diff = [a.length - b.length for a, b in pairs]
        out["win_rate"] = win_rate(wins, where, seed, n)
        out["lc_win_rate"] = length_controlled_win_rate(wins, diff, where, seed, min(n, 1000))
        out["reward_model_difference"] = bootstrap_ci(
            cluster_means([a.scores["rm"] - b.scores["rm"] for a, b in pairs], where), seed, n)
        by_domain: dict[str, list[int]] = defaultdict(list)
        for i, (a, _) in enumerate(pairs):
            by_domain[prompts[a.prompt].domain].append(i)
        out["by_domain"] = {
            d: {"win_rate": win_rate([wins[i] for i in rows], [where[i] for i in rows], seed, n),
                "lc_win_rate": length_controlled_win_rate([wins[i] for i in rows], [diff[i] for i in rows],
                                                          [where[i] for i in rows], seed, min(n, 1000))}
            for d, rows in sorted(by_domain.items())
        }
    if pairs and "mixed" in pairs[0][0].scores:
        mixed = [outcome(a.scores["mixed"], b.scores["mixed"], cfg.tie_tolerance) for a, b in pairs]
        out["mixed_win_rate"] = win_rate(mixed, where, seed, n)
    return out


def length_bias(replies: list[Reply], all_pairs: list[tuple[Reply, Reply]], seed: int) -> dict:
    """How much the reward model cares about length on these replies: the share of unequal-length
    pairs where it scored the shorter reply higher (0.5 = indifferent), and Spearman's ρ between
    score and length over every reply (negative = shorter scores higher)."""
    if not all_pairs or "rm" not in all_pairs[0][0].scores:
        return {}
    return {
        "shorter_preferred": shorter_preferred([a.scores["rm"] for a, _ in all_pairs], [b.scores["rm"] for _, b in all_pairs],
                                               [a.length for a, _ in all_pairs], [b.length for _, b in all_pairs],
                                               [a.prompt for a, _ in all_pairs], seed),
        "spearman_score_length": spearman([r.scores["rm"] for r in replies], [float(r.length) for r in replies]),
    }


def hollow(replies: list[Reply], prompts: list[Prompt], cfg: EvalConfig) -> dict:
    """Signs of a hollow policy (`evaluation.hollow`) on one policy's replies, each read against
    the prompt's last message; with the reward model's ρ(score, length) on these replies."""
    rm = all("rm" in r.scores for r in replies)
    return hollow_figures([prompts[r.prompt].messages[-1]["content"] for r in replies], [r.text for r in replies],
                          [r.prompt for r in replies], [r.scores["rm"] for r in replies] if rm else None,
                          [float(r.length) for r in replies] if rm else None, cfg.seed, cfg.bootstrap_resamples)


def passes_more(follows: dict | None, name: str) -> bool:
    """A win by the rules: the policy's prompt-level strict pass rate beats the baseline's, the
    interval of the difference above 0 (a policy can follow more rules by saying nothing)."""
    diff = ((follows or {}).get("comparisons", {}).get(name, {}).get("all") or {}).get("prompt_strict") or {}
    low = diff.get("low")
    return low is not None and not math.isnan(low) and low > 0


def summarize(replies: list[Reply], prompts: list[Prompt], cfg: EvalConfig, has_kl: bool) -> dict:
    names = [p.name for p in cfg.policies]
    by_policy = {name: [r for r in replies if r.policy == name] for name in names}
    comparisons, all_pairs = {}, []
    for name in names:
        if name == cfg.baseline:
            continue
        pairs = paired(replies, name, cfg.baseline)
        all_pairs += pairs
        comparisons[name] = comparison(pairs, prompts, cfg)
    signs = {name: hollow(by_policy[name], prompts, cfg) for name in names}
    follows = instructions.summarize(replies, prompts, names, cfg.baseline, cfg.seed, cfg.bootstrap_resamples)
    warnings = [warning(name, signs[name], cfg.baseline, signs[cfg.baseline], won(c) or passes_more(follows, name))
                for name, c in comparisons.items()]
    domains = sorted({p.domain for p in prompts})
    return {
        "baseline": cfg.baseline,
        "prompts": {"total": len(prompts), "by_domain": {d: sum(p.domain == d for p in prompts) for d in domains}},
        "policies": {name: {"model": spec.model, **policy_summary(by_policy[name], cfg, has_kl), "hollow": signs[name]}
                     for name, spec in zip(names, cfg.policies)},
        "comparisons": comparisons,
        "warnings": [w for w in warnings if w],
        "reward_model_length_bias": length_bias(replies, all_pairs, cfg.seed),
        "instructions": follows,
    }
