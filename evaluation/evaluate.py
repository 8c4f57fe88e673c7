"""The evaluation in steps: prompts → pre-flight → sample (each policy in turn) → KL reference →
reward model → mixed reward → summary. Every check that can fail on bad input runs before the
first reply is sampled.

With several processes each rank samples and scores prompts[rank::world]; the replies are then
gathered on rank 0, which summarises and writes.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from common import distributed
from common.config import ConfigError
from common.data.prompts import Prompt, drop_long_prompts, load_prompts
from common.models.precision import autocast, resolve_precision
from common.planning.measure import release_memory
from common.rewards.ensemble import load_reward_models, member_folders
from common.rewards.mixer import load_domains
from common.rewards.scorer import REWARD_CONFIG
from common.timing import CLOCK
from evaluation import instructions
from evaluation import sanity as judge_sanity
from evaluation.config import EvalConfig
from evaluation.judges import score_mixed, score_reward_model, summarize
from evaluation.policies import PolicyInfo, Reply, check_policies, reference_logprobs, sample_policy

log = logging.getLogger("evaluation")


@dataclass
class Prepared:
    """Everything checked and ready before sampling starts."""

    prompts: list[Prompt]
    infos: dict[str, PolicyInfo]
    reference: PolicyInfo | None  # None when the KL judge is off
    domains: dict


def check_reward_model(spec: str | list[str]) -> None:
    """Every folder the judge names (an ensemble's every member) is a reward model."""
    from common.models import resolve_model

    for path in member_folders(spec):
        folder = Path(resolve_model(path))
        if not (folder / REWARD_CONFIG).is_file():
            raise FileNotFoundError(f"reward_model: {path} is not a reward model (no {REWARD_CONFIG}); `make rm` trains one")


def prepare(cfg: EvalConfig) -> Prepared:
    """Prompts, policies, reference and judge, checked; raises one clear error on bad input."""
    domains = load_domains(cfg.domains_dir)
    if cfg.judges.reward_model:
        check_reward_model(cfg.reward_model)
    infos, reference = check_policies(cfg)
    baseline_tok = infos[cfg.baseline].tokenizer
    prompts = drop_long_prompts(load_prompts(cfg.prompts, set(domains), cfg.seed), baseline_tok, cfg.max_prompt_tokens)
    if cfg.max_prompts is not None and len(prompts) > cfg.max_prompts:
        prompts = random.Random(cfg.seed).sample(prompts, cfg.max_prompts)
    if not prompts:
        raise ConfigError("prompts: no held-out prompts left to evaluate on")
    return Prepared(prompts, infos, reference, domains)


def sample_all(cfg: EvalConfig, prepared: Prepared, mine: list[int], timing: dict[str, float]) -> list[Reply]:
    """This rank's replies from every policy, with log π(y) and (KL judge) log π_ref(y).

    Policies load one at a time; the KL reference goes last when it is one of them, so its loaded
    weights also score the other policies' replies."""
    device = distributed.device()
    dtype = torch.bfloat16 if resolve_precision(cfg.precision) == "bf16" else torch.float32
    messages = {i: prepared.prompts[i].messages for i in mine}
    ref = prepared.reference
    order = sorted(prepared.infos.values(), key=lambda info: ref is not None and info.spec.name == ref.spec.name)
    replies: list[Reply] = []
    loaded = None
    for k, info in enumerate(order):
        t0 = time.perf_counter()
        seed = cfg.seed + 1000 * distributed.rank() + k  # each rank and each policy its own stream
        # a language model loads in the run's precision; a BCQ model (fp32 on disk) decodes under autocast
        with autocast(cfg.precision, device) if info.kind == "bcq" else contextlib.nullcontext():
            mine_replies, loaded = sample_policy(info, [(i, messages[i]) for i in mine], cfg, dtype, device, seed)
        replies += mine_replies
        timing[f"sample/{info.spec.name}"] = time.perf_counter() - t0
        if not (ref is not None and info.spec.name == ref.spec.name):
            loaded = None
            release_memory()
    if ref is not None:
        t0 = time.perf_counter()
        if loaded is None:  # the reference is not one of the policies
            from evaluation.policies import load_lm

            loaded = load_lm(ref.spec.model, dtype, device)
        model, tokenizer = loaded
        release_memory()  # sampling's KV caches, freed but still held by the allocator
        for r in replies:
            if r.policy == ref.spec.name:
                # the reference's own replies: their recorded log π_T IS log π_ref,T (same model, same
                # temperature, untruncated), so their KL is exactly 0; every other policy is scored below
                r.ref_logprob = r.logprob
        reference_logprobs(model, tokenizer, [r for r in replies if r.ref_logprob is None], messages, cfg)
        timing["kl_reference"] = time.perf_counter() - t0
        del model, tokenizer
        loaded = None
        release_memory()
    return replies


def judge(cfg: EvalConfig, prepared: Prepared, replies: list[Reply], timing: dict[str, float]) -> dict | None:
    """Reward-model scores on this rank's replies (in place; every decoding's); on rank 0 → the judge's
    sanity figures (`evaluation.sanity`)."""
    if not cfg.judges.reward_model:
        return None
    t0 = time.perf_counter()
    device = distributed.device()
    scorer = load_reward_models(cfg.reward_model, cfg.reward_combine, cfg.reward_combine_coef, device=device)
    sanity = None
    with autocast(cfg.precision, device):
        score_reward_model(scorer, replies, prepared.prompts, cfg.batch_size)
        if distributed.is_main_process():
            sanity = judge_sanity.measure(cfg.reward_model, scorer, prepared.prompts, cfg.seed, cfg.batch_size)
    timing["reward_model"] = time.perf_counter() - t0
    del scorer
    release_memory()
    return sanity


def decoding_config(cfg: EvalConfig, k: int) -> EvalConfig:
    """The stage's config for its k-th extra reading (`also_decode[k]`): one reply per prompt and policy,
    no KL judge (a KL between temperature-T distributions is the main reading's), its own seeds."""
    extra = cfg.also_decode[k]
    return replace(cfg, decoding=extra.decoding, temperature=extra.temperature, samples_per_prompt=1,
                   judges=replace(cfg.judges, kl=False), seed=cfg.seed + 7919 * (k + 1), also_decode=[])


def judge_texts(cfg: EvalConfig, prepared: Prepared, replies: list[Reply]) -> None:
    """The judges that read the texts alone, on rank 0 (in place): the mixed reward and the constraints."""
    if cfg.judges.mixed_reward:
        score_mixed(replies, prepared.prompts, prepared.domains)
    if cfg.judges.constraints:
        instructions.judge(replies, prepared.prompts)


def evaluate(cfg: EvalConfig, prepared: Prepared) -> tuple[dict | None, dict[str, list[Reply]]]:
    """Sample and judge; on rank 0 → (the report body, every reply by reading: "" = the main decoding,
    then each `also_decode` name), elsewhere (None, {})."""
    timing: dict[str, float] = {}
    start = time.perf_counter()
    mine = list(range(len(prepared.prompts)))[distributed.rank() :: distributed.world_size()]
    readings = {"": sample_all(cfg, prepared, mine, timing)}
    for k, extra in enumerate(cfg.also_decode):
        extra_timing: dict[str, float] = {}
        readings[extra.name] = sample_all(decoding_config(cfg, k), replace(prepared, reference=None), mine, extra_timing)
        timing.update({f"{extra.name}/{key}": t for key, t in extra_timing.items()})
    sanity = judge(cfg, prepared, [r for part in readings.values() for r in part], timing)
    gathered = distributed.all_gather_objects((readings, timing))
    if not distributed.is_main_process():
        return None, {}
    readings = {name: [r for part, _ in gathered for r in part[name]] for name in readings}
    timing = {k: max(t[k] for _, t in gathered if k in t) for k in timing}  # the slowest rank's
    for replies in readings.values():
        judge_texts(cfg, prepared, replies)
    report = summarize(readings[""], prepared.prompts, cfg, has_kl=prepared.reference is not None)
    if cfg.also_decode:
        report["decodings"] = {}
        for k, extra in enumerate(cfg.also_decode):
            body = summarize(readings[extra.name], prepared.prompts, decoding_config(cfg, k), has_kl=False)
            body.pop("prompts")
            report["decodings"][extra.name] = {"decoding": extra.decoding, "temperature": extra.temperature, **body}
            report["warnings"] += [f"at {extra.name} decoding: {w}" for w in body["warnings"]]
    if sanity is not None:
        report["reward_model_sanity"] = sanity
        report["warnings"] += [w for w in [judge_sanity.warning(sanity)] if w]
    for key, seconds in timing.items():  # the stage's timing.json: sampling (every reading), KL, reward model
        CLOCK.add("sample" if "sample/" in key else key.split("/")[-1], seconds)
    timing["total"] = time.perf_counter() - start
    report["kl_reference"] = None if prepared.reference is None else prepared.reference.spec.model
    report["timing_seconds"] = timing
    return report, readings
