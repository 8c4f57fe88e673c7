"""Held-out evaluation of a BCQ model: BCQ decoding vs G's own decoding vs the logged responses.

For each held-out prompt: the reward-model score (normalized by its saved statistics) and the
mixed per-domain reward (`common.rewards`, one normalization over everything compared) of the
BCQ response, G's response and the logged responses, each mean with a 95% bootstrap
confidence interval (`common.stats`, the evaluation stage's own); the mean KL of BCQ's decoding to G; the mean
number of allowed tokens per step; Q of the first token against the reward actually obtained
(overestimation); and the same for every τ of a sweep.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bcq_offline.data import LoggedResponse
from bcq_offline.decode import Decoded, constrained_generate
from bcq_offline.model import BCQModel
from common.rewards.mixer import RewardMixer, Sample
from common.stats import bootstrap_ci, length_controlled_win_rate, outcome, win_rate


def _decode(model, tokenizer, prompts, tau, cfg, policy, seed) -> list[Decoded]:
    out = []
    gen = torch.Generator().manual_seed(seed)
    label = f"evaluating: {'BCQ τ=' + format(tau, 'g') if policy == 'bcq' else 'G'} decoding"
    for start in tqdm(range(0, len(prompts), cfg.eval_batch_size), desc=label, leave=False):
        out += constrained_generate(model, tokenizer, prompts[start : start + cfg.eval_batch_size], tau, cfg.max_new_tokens,
                                    greedy=cfg.decode == "greedy", temperature=cfg.decode_temperature,
                                    policy=policy, generator=gen)
    return out


def evaluate(model: BCQModel, tokenizer, held_out: list[LoggedResponse], cfg, scorer=None, domains=None,
             taus: list[float] | None = None) -> dict:
    """Figures for the held-out prompts (unique prompts of `held_out`)."""
    by_prompt: dict[str, list[LoggedResponse]] = defaultdict(list)
    for r in held_out:
        by_prompt[repr(r.prompt)].append(r)
    groups = list(by_prompt.values())[: cfg.eval_prompts]
    prompts = [g[0].prompt for g in groups]
    domain = [g[0].domain for g in groups]
    report: dict = {"prompts": len(prompts)}
    if not prompts:
        return report

    def rm(responses: list[str], for_prompts) -> list[float]:
        if scorer is None:
            return [math.nan] * len(responses)
        return scorer(for_prompts, responses, normalize=True).tolist()

    bcq = _decode(model, tokenizer, prompts, cfg.tau, cfg, "bcq", cfg.seed)
    g = _decode(model, tokenizer, prompts, cfg.tau, cfg, "behaviour", cfg.seed)
    logged = [r for grp in groups for r in grp]
    rm_bcq, rm_g = rm([d.response for d in bcq], prompts), rm([d.response for d in g], prompts)
    rm_logged = rm([r.response for r in logged], [r.prompt for r in logged])
    report["reward_model"] = {"bcq": bootstrap_ci(rm_bcq, cfg.seed), "behaviour": bootstrap_ci(rm_g, cfg.seed),
                              "logged": bootstrap_ci(rm_logged, cfg.seed),
                              # paired per prompt: the sharper test of "BCQ beats G" than two overlapping intervals
                              "bcq_minus_behaviour": bootstrap_ci([a - b for a, b in zip(rm_bcq, rm_g)], cfg.seed)}
    if scorer is not None:  # the evaluation stage's paired win-rate, by the same code
        wins = [outcome(a, b) for a, b in zip(rm_bcq, rm_g)]
        diff = [len(a.tokens) - len(b.tokens) for a, b in zip(bcq, g)]
        report["win_rate_vs_behaviour"] = win_rate(wins, list(range(len(wins))), cfg.seed)
        report["lc_win_rate_vs_behaviour"] = length_controlled_win_rate(wins, diff, list(range(len(wins))), cfg.seed)
    report["logged_reward"] = bootstrap_ci([r.reward for r in logged], cfg.seed)
    if domains is not None:  # mixed reward, one normalization over all three sets of responses
        samples = (
            [Sample(d.response, dom, i, len(d.tokens), rm_score=None if math.isnan(s) else s)
             for i, (d, dom, s) in enumerate(zip(bcq, domain, rm_bcq))]
            + [Sample(d.response, dom, 10_000 + i, len(d.tokens), rm_score=None if math.isnan(s) else s)
               for i, (d, dom, s) in enumerate(zip(g, domain, rm_g))]
            + [Sample(r.response, r.domain, 20_000 + i, len(tokenizer(r.response, add_special_tokens=False)["input_ids"]),
                      rm_score=None if math.isnan(s) else s) for i, (r, s) in enumerate(zip(logged, rm_logged))]
        )
        mixed, _ = RewardMixer(domains)(samples)
        n1, n2 = len(bcq), len(bcq) + len(g)
        report["mixed_reward"] = {"bcq": bootstrap_ci(mixed[:n1].tolist(), cfg.seed),
                                  "behaviour": bootstrap_ci(mixed[n1:n2].tolist(), cfg.seed),
                                  "logged": bootstrap_ci(mixed[n2:].tolist(), cfg.seed)}
    report["kl_to_behaviour"] = float(np.mean([d.kl_to_g for d in bcq]))
    report["allowed_tokens"] = float(np.mean([np.mean(d.allowed) for d in bcq if d.allowed]))
    q_first = float(np.mean([d.q_first for d in bcq]))
    obtained = float(np.nanmean(rm_bcq)) if scorer is not None else math.nan
    report["q_first_token"] = q_first
    report["overestimation"] = q_first - obtained  # Q's promise minus the reward model's verdict
    report["samples"] = [{"prompt": p[-1]["content"], "bcq": b.response, "behaviour": gg.response}
                         for p, b, gg in zip(prompts[:5], bcq, g)]
    sweep = []
    for tau in taus or []:
        if tau == cfg.tau:  # decoded above, with the same seed: the same responses
            decoded, scores = bcq, rm_bcq
        else:
            decoded = _decode(model, tokenizer, prompts, tau, cfg, "bcq", cfg.seed)
            scores = rm([d.response for d in decoded], prompts)
        sweep.append({"tau": tau, "reward_model": bootstrap_ci(scores, cfg.seed),
                      "minus_behaviour": bootstrap_ci([a - b for a, b in zip(scores, rm_g)], cfg.seed),
                      "kl_to_behaviour": float(np.mean([d.kl_to_g for d in decoded])),
                      "allowed_tokens": float(np.mean([np.mean(d.allowed) for d in decoded if d.allowed]))})
    report["tau_sweep"] = sweep
    return report


def summary_line(report: dict, final: Path, run_dir: Path) -> str:
    lines = [f"BCQ done: model in {final}; evaluation in {run_dir / 'eval.json'} ({report.get('prompts', 0)} held-out prompts)"]
    rm = report.get("reward_model")
    if rm and rm["bcq"]["n"]:
        for who in ("bcq", "behaviour", "logged", "bcq_minus_behaviour"):
            ci = rm[who]
            name = "BCQ − G (paired)" if who == "bcq_minus_behaviour" else who
            lines.append(f"  reward-model score, {name:16}: {ci['mean']:+.3f}  [{ci['low']:+.3f}, {ci['high']:+.3f}]")
    if "win_rate_vs_behaviour" in report:
        wr, lc = report["win_rate_vs_behaviour"], report["lc_win_rate_vs_behaviour"]
        controlled = (f"withheld ({lc['withheld']})" if lc.get("withheld")
                      else f"{100 * lc['mean']:.0f}% [{100 * lc['low']:.0f}, {100 * lc['high']:.0f}]")
        lines.append(f"  BCQ wins against G in {100 * wr['mean']:.0f}% [{100 * wr['low']:.0f}, {100 * wr['high']:.0f}] "
                     f"of prompts; length-controlled {controlled}")
    if "kl_to_behaviour" in report:
        lines.append(f"  KL to G per response {report['kl_to_behaviour']:.2f}; allowed tokens per step "
                     f"{report['allowed_tokens']:.1f}; Q(first token) {report['q_first_token']:+.3f}")
    return "\n".join(lines)
