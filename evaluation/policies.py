"""The policies being compared: checked before anything is sampled, then loaded one at a time.

A policy is a language model (an SFT/PPO/DPO output — full weights or a LoRA adapter —, an
export's merged folder or GGUF file, the default model, a hub id) that samples through `generate`,
or a BCQ model (`bcq_config.json`) that decodes with its batch-constrained decoding. Each reply
carries log π_T(y), the policy's own temperature-T distribution, untruncated, for the KL judge
(`evaluation.judges.kl_term`): a language model's softmax(logits / T), a BCQ model's softmax(Q / T)
over its allowed tokens — the same quantity whether the reply was sampled (with any top-p) or
decoded greedily.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from bcq_offline.saving import BCQ_CONFIG
from common.config import ConfigError
from common.data import Message
from common.models import ModelNotFoundError, adapter_base, load_model_and_tokenizer, load_tokenizer, resolve_model
from common.models.generate import encode_prompts, response_logprobs, sample_batch
from evaluation.config import EvalConfig, PolicySpec

log = logging.getLogger(__name__)


@dataclass
class Reply:
    """One reply of one policy to one prompt, and what the judges add to it."""

    policy: str
    prompt: int  # index into the evaluation's prompt list
    sample: int  # sample index: replies of two policies with the same (prompt, sample) are compared
    text: str
    tokens: list[int]  # response token ids (EOS included when it ended)
    ended: bool
    logprob: float | None = None  # log π_T(y): the policy's temperature-T distribution, untruncated
    ref_logprob: float | None = None  # log π_ref,T(y): the KL reference's, likewise
    scores: dict[str, float] = field(default_factory=dict)  # rm, mixed, components; if_strict, if_loose
    followed: dict[str, list[bool]] | None = None  # strict/loose verdict per constraint of its prompt (if any)

    @property
    def length(self) -> int:
        """Reply length in tokens, EOS not counted."""
        return len(self.tokens) - int(self.ended)


@dataclass
class PolicyInfo:
    """What the pre-flight check learned about a policy (nothing is loaded yet)."""

    spec: PolicySpec
    kind: str  # "lm" or "bcq"
    tokenizer: object


def is_bcq(folder: str) -> bool:
    return Path(folder).is_dir() and (Path(folder) / BCQ_CONFIG).is_file()


def check_model(name: str, spec: str) -> tuple[str, object]:
    """(kind, tokenizer) of a model spec, or one clear error naming the policy and the spec."""
    try:
        folder = resolve_model(spec)
        if is_bcq(folder):
            import json

            base = json.loads((Path(folder) / BCQ_CONFIG).read_text()).get("base")
            resolve_model(base)
            return "bcq", load_tokenizer(folder)
        base = adapter_base(folder)
        if base is not None:
            resolve_model(base)
        return "lm", load_tokenizer(folder)
    except ModelNotFoundError as err:
        raise ModelNotFoundError(f"policy '{name}': {err}") from None
    except (OSError, ValueError, KeyError) as err:
        raise ModelNotFoundError(f"policy '{name}': model '{spec}' does not load ({str(err).splitlines()[0]})") from None


def same_vocabulary(a, b) -> bool:
    """Every token id means the same token in both, up to the unused `[PAD<id>]` rows a GGUF file
    adds to reach the model's embedding count (llama.cpp's converter and the export stage do so)."""
    def meaningful(tokenizer) -> dict[str, int]:
        return {token: i for token, i in tokenizer.get_vocab().items() if token != f"[PAD{i}]"}

    return meaningful(a) == meaningful(b)


def check_policies(cfg: EvalConfig) -> tuple[dict[str, PolicyInfo], PolicyInfo | None]:
    """Every policy and the KL reference, checked before sampling: they load (tokenizer, config,
    adapter base), and where the KL judge needs it they share the reference's tokenizer."""
    infos = {}
    for spec in cfg.policies:
        kind, tok = check_model(spec.name, spec.model)
        if spec.tau is not None and kind != "bcq":
            raise ConfigError(f"policy '{spec.name}': tau applies to BCQ models only ({spec.model} is a language model)")
        if spec.tau is not None and not 0 < spec.tau < 1:
            raise ConfigError(f"policy '{spec.name}': tau must lie in (0, 1), got {spec.tau}")
        infos[spec.name] = PolicyInfo(spec, kind, tok)
    if not cfg.judges.kl:
        return infos, None
    ref_name = cfg.kl_reference or cfg.baseline
    if ref_name in infos:
        reference = infos[ref_name]
    else:
        kind, tok = check_model("kl_reference", ref_name)
        reference = PolicyInfo(PolicySpec(name="kl_reference", model=ref_name), kind, tok)
    if reference.kind == "bcq":
        raise ConfigError(f"kl_reference '{ref_name}' is a BCQ model; the KL reference must be a language model")
    for info in infos.values():
        if not same_vocabulary(info.tokenizer, reference.tokenizer):
            raise ConfigError(
                f"policy '{info.spec.name}' ({info.spec.model}) uses another tokenizer than the KL reference "
                f"'{reference.spec.name}' ({reference.spec.model}): the KL needs one vocabulary; set judges.kl: false "
                "or name another kl_reference"
            )
    return infos, reference


def load_lm(spec: str, dtype: torch.dtype, device: torch.device):
    model, tokenizer = load_model_and_tokenizer(spec, dtype=dtype)
    return model.to(device).eval(), tokenizer


def sample_policy(info: PolicyInfo, prompts: list[tuple[int, list[Message]]], cfg: EvalConfig, dtype: torch.dtype,
                  device: torch.device, seed: int) -> tuple[list[Reply], object]:
    """Every reply of one policy to `prompts` ((index, messages) pairs), with log π(y).

    Returns the replies and the loaded (model, tokenizer) — a language model stays loaded for the
    caller, who may need it as the KL reference; for a BCQ model, None."""
    if info.kind == "bcq":
        return _sample_bcq(info, prompts, cfg, device, seed), None
    name, n = info.spec.name, cfg.samples_per_prompt
    model, tokenizer = load_lm(info.spec.model, dtype, device)
    generator = torch.Generator(device=device).manual_seed(seed)
    encoded = sorted(zip([i for i, _ in prompts], encode_prompts(tokenizer, [m for _, m in prompts])),
                     key=lambda pair: len(pair[1]))  # batches of similar lengths: less padding to prefill
    do_sample = decoding_of(info.spec, "lm", cfg) == "sample"
    replies: list[Reply] = []
    for start in tqdm(range(0, len(encoded), cfg.batch_size), desc=f"sampling {name}", leave=False):
        part = encoded[start : start + cfg.batch_size]
        groups = sample_batch(model, tokenizer, [ids for _, ids in part], n, cfg.max_new_tokens, do_sample,
                              cfg.temperature, cfg.top_p, generator)
        replies += [Reply(name, idx, k, r.text, r.tokens, r.ended, r.logprob)
                    for (idx, _), group in zip(part, groups) for k, r in enumerate(group)]
    return replies, (model, tokenizer)


def decoding_of(spec: PolicySpec, kind: str, cfg: EvalConfig) -> str:
    if spec.decoding is not None:
        return spec.decoding
    return "greedy" if kind == "bcq" else cfg.decoding


def _sample_bcq(info: PolicyInfo, prompts, cfg: EvalConfig, device: torch.device, seed: int) -> list[Reply]:
    """BCQ's constrained decoding; greedy decodes each prompt once and repeats the reply for every sample index."""
    from bcq_offline.decode import constrained_generate
    from bcq_offline.saving import load_bcq

    model, tokenizer, meta = load_bcq(resolve_model(info.spec.model))
    model.to(device)
    tau = info.spec.tau if info.spec.tau is not None else meta["tau"]
    greedy = decoding_of(info.spec, "bcq", cfg) == "greedy"
    per_prompt = 1 if greedy else cfg.samples_per_prompt
    generator = torch.Generator(device=device).manual_seed(seed)
    replies = []
    for start in tqdm(range(0, len(prompts), cfg.batch_size), desc=f"decoding {info.spec.name} (BCQ τ={tau:g})",
                      leave=False):
        part = prompts[start : start + cfg.batch_size]
        decoded = constrained_generate(model, tokenizer, [m for _, m in part for _ in range(per_prompt)], tau,
                                       cfg.max_new_tokens, greedy=greedy, temperature=cfg.temperature,
                                       generator=generator)
        for j, (idx, _) in enumerate(part):
            for k in range(cfg.samples_per_prompt):
                d = decoded[j * per_prompt + (0 if greedy else k)]
                replies.append(Reply(info.spec.name, idx, k, d.response.strip(), list(d.tokens), d.ended, d.logprob))
    return replies


def reference_logprobs(model, tokenizer, replies: list[Reply], messages: dict[int, list[Message]], cfg: EvalConfig) -> None:
    """Fill `ref_logprob` of `replies` (in place): log π_ref,T(y) under the loaded reference model at
    the stage's temperature, untruncated — as every reply's own log π_T was recorded."""
    prompt_ids = dict(zip(messages, encode_prompts(tokenizer, list(messages.values()))))
    ordered = sorted(replies, key=lambda r: len(prompt_ids[r.prompt]) + len(r.tokens))  # similar lengths together
    for start in tqdm(range(0, len(ordered), cfg.batch_size), desc="KL reference", leave=False):
        part = ordered[start : start + cfg.batch_size]
        logps = response_logprobs(model, [prompt_ids[r.prompt] for r in part], [r.tokens for r in part],
                                  tokenizer.pad_token_id, cfg.temperature, cfg.batch_size)
        for r, lp in zip(part, logps):
            r.ref_logprob = lp
