"""Memory plan of the offline BCQ stage (common/planning/formulas.py): the behaviour model G frozen, the
Q head (full: V × H + V; bilinear: H × H + V) and — with a separate trunk — LoRA adapters
training, their target-network copy, the state cache (at most `cache_max_gb`), and the two
phases: updates on `batch_size` logged responses (Q's and G's logits over the response) and
the final evaluation's constrained decoding of `eval_batch_size` prompts."""

from __future__ import annotations

from pathlib import Path

from bcq_offline.config import BCQStageConfig
from common.planning.formulas import (
    Plan,
    Row,
    Setup,
    activation_bytes,
    decode_bytes,
    frozen_model,
    kv_cache_bytes,
    logits_bytes,
    model_states,
    resolve_arch,
)
from common.rewards.ensemble import member_folders


def _records(cfg: BCQStageConfig) -> int:
    """Training records the data files hold (lines × weight, less the held-out share); a folder
    (a datasets snapshot) counts as unbounded."""
    import gzip

    total = 0.0
    for src in cfg.data:
        path = Path(src.path)
        if not path.is_file():
            return 10**9
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            total += sum(1 for line in f if line.strip()) * src.weight
    return int(total * (1 - cfg.eval_fraction))


def plan(cfg: BCQStageConfig, setup: Setup) -> Plan:
    arch = resolve_arch(cfg.model, "model")
    head = arch.vocab * arch.hidden + arch.vocab if cfg.q_head == "full" else arch.hidden**2 + arch.vocab
    rows = [frozen_model("behaviour model G", arch, setup)]
    trainable = head
    first = arch.layers
    if cfg.q_trunk == "separate":
        trainable += arch.lora_params(cfg.lora.rank, cfg.lora.target_modules, cfg.lora.layers)
        first = min(cfg.lora.layers) if cfg.lora.layers else 0
    q = model_states("Q head" + (" + LoRA trunk" if cfg.q_trunk == "separate" else ""), trainable, trainable, setup)
    q.weights = 4 * trainable  # the head (and adapters) are fp32 tensors of their own
    rows += [q, Row("target network", trainable, weights=4 * trainable, note="a copy of the trainable tensors")]
    cached = False
    if cfg.cache_states and cfg.q_trunk == "shared" and setup.zero != 3:
        records = min(cfg.steps * cfg.batch_size, _records(cfg))
        size = records * (cfg.max_response_tokens + 1) * arch.hidden * 4
        if size <= cfg.cache_max_gb * 1e9:  # the trainer's own rule (GB of 10⁹)
            cached = True
            rows.append(Row("state cache", activations=size, note=f"{records} records × {cfg.max_response_tokens + 1} "
                            "positions × hidden, fp32"))
    p = Plan("bcq", setup, rows)
    tokens = cfg.max_prompt_tokens + cfg.max_response_tokens
    positions = cfg.max_response_tokens + 1
    if cached:
        # the states are cached 2·batch_size records at a time, each with G's log-probabilities over
        # the vocabulary (no gradients) and the allowed-token mask (a byte an element); the updates
        # then evaluate Q only at the taken and the allowed tokens: no vocabulary-wide logits
        b = 2 * cfg.batch_size
        p.phases["cache states"] = [Row("G's log-probs", activations=logits_bytes(arch, b, positions, setup, grad=False)
                                        + b * positions * arch.vocab, note=f"{b} records at a time, no gradients")]
        p.phases["update"] = [Row("cached states", activations=cfg.batch_size * positions * arch.hidden * 4 * 3,
                                  note="Q over the taken and allowed tokens only")]
    else:
        p.phases["update"] = [
            Row("trunk", activations=activation_bytes(arch, cfg.batch_size, tokens, first, setup),
                note=f"{cfg.batch_size} responses × {tokens} tok"),
            Row("Q and G logits", activations=logits_bytes(arch, cfg.batch_size, positions, setup)
                + 2 * logits_bytes(arch, cfg.batch_size, positions, setup, grad=False),
                note="online Q with gradients; target Q and G's constraint without"),
        ]
    w = decode_bytes(setup)
    # the final evaluation frees the trained copy and loads the saved model (G and Q: the resident
    # rows stand for it); the reward model, loaded at the start, is read only now
    evaluation = [Row("KV cache", kv_cache=kv_cache_bytes(arch, cfg.eval_batch_size,
                                                          cfg.max_prompt_tokens + cfg.max_new_tokens, w),
                      note=f"{cfg.eval_batch_size} prompts decoded together")]
    for folder in member_folders(cfg.reward_model) if cfg.reward_model else []:  # an ensemble: every member
        rm = resolve_arch(folder, "reward_model")
        evaluation.append(Row("reward model (judge)", rm.classifier_params, weights=4 * rm.classifier_params,
                              note="fp32, scores the held-out replies"))
    evaluation.append(  # the evaluation runs after the trained copy is gone (on every rank)
Row("freed: Q's gradients, optimizer, target", weights=-4 * trainable, grads=-q.grads,
                              optimizer=-q.optimizer, note="the saved model reloads without them"))
    p.phases["evaluation"] = evaluation
    return p
