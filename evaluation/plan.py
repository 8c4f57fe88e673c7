"""Memory plan of the evaluation stage (common/planning/formulas.py). Nothing stays resident: each policy
loads in turn (in the run's precision; on a CPU in bf16 the fp32 file and the converted copy are
both in memory while it loads) to sample — its weights and the KV cache of `batch_size`
prompts × `samples_per_prompt` replies —, then the KL reference scores every reply, then the
reward model (fp32) scores them. The peak is the largest of these phases."""

from __future__ import annotations

from common.planning.formulas import Plan, Row, Setup, kv_cache_bytes, logits_bytes, longest_prompt_tokens, resolve_arch
from common.rewards.ensemble import member_folders
from evaluation.config import EvalConfig


def plan(cfg: EvalConfig, setup: Setup) -> Plan:
    p = Plan("evaluation", setup)
    w = 2 if setup.bf16 else 4  # policies load in the run's precision, on a CPU too
    batch = cfg.batch_size * cfg.samples_per_prompt
    prompt, source = longest_prompt_tokens(cfg.policies[0].model if cfg.policies else "", cfg.prompts, cfg.domains_dir,
                                           cfg.seed, cfg.max_prompt_tokens)
    tokens = prompt + cfg.max_new_tokens
    p.notes.append(f"sequences: {source} + {cfg.max_new_tokens} new tokens")
    for spec in cfg.policies:
        arch = resolve_arch(spec.model, f"policies.{spec.name}")
        if setup.device == "cpu" and w == 2:
            # fp32 checkpoints (what our stages save) are mapped and converted: both in memory at once
            p.phases[f"load {spec.name}"] = [Row(spec.name, arch.params, weights=6 * arch.params,
                                                 note="fp32 file pages + the bf16 copy, while converting")]
        p.phases[f"sample {spec.name}"] = [
            Row(spec.name, arch.params, weights=w * arch.params, note="weights in the run's precision"),
            Row("KV cache", kv_cache=kv_cache_bytes(arch, batch, tokens, w), note=f"{batch} replies × {tokens} tok"),
        ]
    if cfg.judges.kl and cfg.policies:
        ref_spec = cfg.kl_reference or cfg.baseline
        model = next((s.model for s in cfg.policies if s.name == ref_spec), ref_spec)
        arch = resolve_arch(model, "kl_reference")
        p.phases["KL reference"] = [
            Row("reference", arch.params, weights=w * arch.params),
            Row("logits", activations=logits_bytes(arch, cfg.batch_size, cfg.max_new_tokens + 1, setup, grad=False,
                                                   lean=True),
                note=f"{cfg.batch_size} replies' positions, no gradients"),
        ]
    if cfg.judges.reward_model and cfg.reward_model:
        rows = []
        for folder in member_folders(cfg.reward_model):  # an ensemble: every member at once
            arch = resolve_arch(folder, "reward_model")
            rows.append(Row("reward model", arch.classifier_params, weights=4 * arch.classifier_params,
                            note="fp32 as loaded"))
        p.phases["reward model"] = rows
    return p
