"""Instruction following, judged by rules (`common.rewards.verifiers`): IFEval's pass rates.

For the held-out prompts that carry `constraints`, every reply gets a verdict per constraint,
strict (the reply as written) and loose (IFEval's variants: first or last line dropped, markdown
`*` removed). Per policy:

- prompt-level pass rate: the share of replies that follow *every* constraint of their prompt;
- constraint-level pass rate: the share of all constraints followed (a prompt with three
  constraints weighs three times);

each strict and loose, with a 95% bootstrap interval over prompts, overall, per constraint type,
per language and for the rows whose constraint types no training row had (`heldout_types`: how
far learning generalises) apart from the others; and each policy's difference to the baseline,
paired by prompt, with its interval.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from common.data.prompts import Prompt
from common.rewards.verifiers import constraint_results, language_of
from common.stats import RESAMPLES
from evaluation.policies import Reply

LEVELS = ("prompt_strict", "prompt_loose", "constraint_strict", "constraint_loose")


def judge(replies: list[Reply], prompts: list[Prompt]) -> None:
    """Each reply to a prompt with constraints gets `followed = {"strict": [...], "loose": [...]}`
    (one verdict per constraint) and `scores["if_strict"]`, `scores["if_loose"]` (1 when it follows
    all of them)."""
    for r in replies:
        constraints = prompts[r.prompt].constraints
        if not constraints:
            continue
        r.followed = {"strict": constraint_results(r.text, constraints),
                      "loose": constraint_results(r.text, constraints, loose=True)}
        for how in ("strict", "loose"):
            r.scores[f"if_{how}"] = float(all(r.followed[how]))


def language(prompt: Prompt) -> str:
    """The row's language, or the one its text is written in."""
    return prompt.lang or language_of(prompt.messages[-1]["content"])


def ratio_ci(num: Sequence[float], den: Sequence[float], clusters: Sequence[Hashable], seed: int = 0,
             resamples: int = RESAMPLES) -> dict:
    """Σ num / Σ den with a 95% percentile interval from resampling clusters (prompts) whole."""
    sums: dict[Hashable, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for n, d, c in zip(num, den, clusters, strict=True):
        sums[c][0] += n
        sums[c][1] += d
    if not sums:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    per = np.array(list(sums.values()))  # (prompts, 2)
    mean = float(per[:, 0].sum() / per[:, 1].sum())
    if len(per) == 1:
        return {"mean": mean, "low": mean, "high": mean, "n": 1}
    draws = np.random.default_rng(seed).integers(0, len(per), size=(resamples, len(per)))
    picked = per[draws]  # (resamples, prompts, 2)
    ratios = picked[:, :, 0].sum(axis=1) / np.maximum(picked[:, :, 1].sum(axis=1), 1e-12)
    low, high = np.percentile(ratios, [2.5, 97.5])
    return {"mean": mean, "low": float(low), "high": float(high), "n": len(per)}


def pass_rates(replies: list[Reply], seed: int, resamples: int) -> dict:
    """The four IFEval figures of `replies` (all judged), each with an interval over prompts."""
    where = [r.prompt for r in replies]
    out = {}
    for how in ("strict", "loose"):
        out[f"prompt_{how}"] = ratio_ci([float(all(r.followed[how])) for r in replies], [1.0] * len(replies), where,
                                        seed, resamples)
        out[f"constraint_{how}"] = ratio_ci([float(sum(r.followed[how])) for r in replies],
                                            [float(len(r.followed[how])) for r in replies], where, seed, resamples)
    return out


def by_type(replies: list[Reply], prompts: list[Prompt], seed: int, resamples: int) -> dict:
    """Per constraint type: the share of its instances followed, strict and loose."""
    rows: dict[str, dict[str, list]] = defaultdict(lambda: {"strict": [], "loose": [], "where": []})
    for r in replies:
        for i, c in enumerate(prompts[r.prompt].constraints):
            row = rows[c["type"]]
            row["strict"].append(float(r.followed["strict"][i]))
            row["loose"].append(float(r.followed["loose"][i]))
            row["where"].append(r.prompt)
    return {kind: {"strict": ratio_ci(v["strict"], [1.0] * len(v["strict"]), v["where"], seed, resamples),
                   "loose": ratio_ci(v["loose"], [1.0] * len(v["loose"]), v["where"], seed, resamples),
                   "instances": len(v["strict"])}
            for kind, v in sorted(rows.items())}


def subsets(replies: list[Reply], prompts: list[Prompt]) -> dict[str, list[Reply]]:
    """The replies by language and by whether their prompt's constraint types were seen in training."""
    out: dict[str, list[Reply]] = defaultdict(list)
    for r in replies:
        p = prompts[r.prompt]
        out[f"lang:{language(p)}"].append(r)
        out["heldout_types" if p.heldout_types else "seen_types"].append(r)
    return dict(out)


def differences(policy: list[Reply], baseline: list[Reply], seed: int, resamples: int) -> dict:
    """Policy − baseline for each IFEval figure, paired by prompt (each prompt's share over its
    samples), with a 95% interval over prompts."""
    def per_prompt(replies: list[Reply], level: str, how: str) -> dict[int, tuple[float, float]]:
        acc: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for r in replies:
            verdicts = r.followed[how]
            acc[r.prompt][0] += float(all(verdicts)) if level == "prompt" else float(sum(verdicts))
            acc[r.prompt][1] += 1.0 if level == "prompt" else float(len(verdicts))
        return {p: (n, d) for p, (n, d) in acc.items()}

    out = {}
    for level in ("prompt", "constraint"):
        for how in ("strict", "loose"):
            a, b = per_prompt(policy, level, how), per_prompt(baseline, level, how)
            shared = sorted(set(a) & set(b))
            if not shared:
                continue
            ra = np.array([a[p][0] / a[p][1] for p in shared])
            rb = np.array([b[p][0] / b[p][1] for p in shared])
            weights = np.array([a[p][1] + b[p][1] for p in shared])  # constraint level: prompts weigh by constraints
            diff = ra - rb
            draws = np.random.default_rng(seed).integers(0, len(shared), size=(resamples, len(shared)))
            w = weights[draws]
            boot = (diff[draws] * w).sum(axis=1) / w.sum(axis=1)
            low, high = np.percentile(boot, [2.5, 97.5]) if len(shared) > 1 else (diff[0], diff[0])
            out[f"{level}_{how}"] = {"mean": float((diff * weights).sum() / weights.sum()), "low": float(low),
                                     "high": float(high), "n": len(shared)}
    return out


def summarize(replies: list[Reply], prompts: list[Prompt], names: list[str], baseline: str, seed: int,
              resamples: int) -> dict | None:
    """Every policy's pass rates (overall, per type, per language, seen vs held-out types) and each
    policy's difference to the baseline; None when no prompt has constraints."""
    judged = [r for r in replies if r.followed is not None]
    if not judged:
        return None
    policies, comparisons = {}, {}
    base = [r for r in judged if r.policy == baseline]
    for name in names:
        mine = [r for r in judged if r.policy == name]
        parts = subsets(mine, prompts)
        policies[name] = {**pass_rates(mine, seed, resamples),
                          "prompts": len({r.prompt for r in mine}),
                          "by_type": by_type(mine, prompts, seed, resamples),
                          "subsets": {k: {**pass_rates(v, seed, resamples), "prompts": len({r.prompt for r in v})}
                                      for k, v in sorted(parts.items())}}
        if name != baseline:
            base_parts = subsets(base, prompts)
            comparisons[name] = {"all": differences(mine, base, seed, resamples),
                                 **{k: differences(v, base_parts.get(k, []), seed, resamples)
                                    for k, v in sorted(parts.items())}}
    return {"policies": policies, "comparisons": comparisons}


def table_lines(report: dict) -> list[str]:
    """The pass rates under the main table: one line per policy, then the subsets."""
    block = report.get("instructions")
    if not block:
        return []

    def pct(x: dict | None, signed: bool = False) -> str:
        if not x or x.get("mean") is None or math.isnan(x["mean"]):
            return "—"
        f = "+.0f" if signed else ".0f"
        return f"{100 * x['mean']:{f}}% [{100 * x['low']:{f}}, {100 * x['high']:{f}}]"

    base = report["baseline"]
    lines = ["instruction following (rules; IFEval's strict / loose, 95% intervals over prompts):"]
    for name, s in block["policies"].items():
        c = block["comparisons"].get(name, {}).get("all", {})
        delta = f"  Δ prompt strict vs {base} {pct(c.get('prompt_strict'), True)}" if c else ""
        lines.append(f"  {name}: prompt {pct(s['prompt_strict'])} / {pct(s['prompt_loose'])}, constraint "
                     f"{pct(s['constraint_strict'])} / {pct(s['constraint_loose'])} ({s['prompts']} prompts){delta}")
        for key, sub in s["subsets"].items():
            d = block["comparisons"].get(name, {}).get(key, {})
            delta = f", Δ {pct(d.get('prompt_strict'), True)}" if d else ""
            lines.append(f"    {key:14} prompt strict {pct(sub['prompt_strict'])} ({sub['prompts']} prompts){delta}")
    return lines


def flat(report: dict) -> dict[str, dict]:
    """Headline figures for trackers: `<policy>/<subset>/<level>` → {mean, low, high}."""
    block = report.get("instructions") or {}
    out = {}
    for name, s in block.get("policies", {}).items():
        for level in LEVELS:
            out[f"{name}/if/{level}"] = s[level]
        for key, sub in s["subsets"].items():
            out[f"{name}/if/{key}/prompt_strict"] = sub["prompt_strict"]
    for name, c in block.get("comparisons", {}).items():
        for level, d in c.get("all", {}).items():
            out[f"{name}/if/delta/{level}"] = d
    return out
