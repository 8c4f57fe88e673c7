"""The export stage in order: every input checked (kinds, device and dtype, the chain, prompts, the
evaluation, credentials) before anything is written → `<out>.tmp/` → the unmerged chain's sequences
and log-probs → merged weights written → the written folder loaded by plain transformers and
compared → each export kind built and checked → export.json and the card → renamed to `<out>/` →
pushed, when asked and verified. A run stopped half-way leaves only `<out>.tmp/`."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from common.runs import open_run_dir, publish
from common.tracking.provenance import file_hash, git_state
from export import hub, verify
from export.card import CARD, write_card
from export.chain import Chain, ExportError, resolve_chain
from export.config import ExportConfig
from export.kinds import check_kinds
from export.merge import load_full_weights, merged_model, pick_device, unmerged_model, write_hf_folder
from export.sources import find_evaluation

RECORD = hub.RECORD


def chain_logits(chain: Chain, prompts: list[str], new_tokens: int, device) -> tuple[list, list, list]:
    """(sequences, the unmerged chain's logits, the base's logits): what the export is checked against,
    and how far the adapters move the base (the check's sensitivity)."""
    model, tokenizer = unmerged_model(chain, device)
    seqs = verify.sequences(model, tokenizer, prompts, new_tokens)
    logits = verify.logits_of(model, seqs)
    del model
    base = verify.logits_of(load_full_weights(chain.base.folder, device), seqs) if chain.adapters else logits
    return seqs, logits, base


def verification(cfg: ExportConfig, seqs, ref_logits, base_logits, exported: verify.Reference, n_prompts: int) -> dict:
    figures = verify.logprob_figures(ref_logits, exported.logits, seqs)
    tolerance = verify.tolerance_for(cfg.dtype, cfg.tolerance)
    effect = verify.logprob_figures(ref_logits, base_logits, seqs)
    return {"reference": "the adapter chain unmerged, fp32", "export_arithmetic": "fp32", "prompts": n_prompts,
            **figures, "tolerance": tolerance, "criterion": "max_abs <= tolerance",
            "passed": figures["max_abs"] <= tolerance, "adapter_effect": effect,
            "sensitive": effect["max_abs"] > tolerance}


def file_table(folder: Path) -> dict[str, dict]:
    """{relative path: {bytes, sha256}} of every file of the export (its record and card aside)."""
    return {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": file_hash(p)}
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in (RECORD, CARD)}


def run(cfg: ExportConfig, run_dir: Path) -> Path:
    started = time.perf_counter()
    kinds = check_kinds(cfg.kinds)
    device = pick_device(cfg.device, cfg.dtype)
    chain = resolve_chain(cfg.run)
    if not Path(cfg.verify_prompts).is_file():
        raise ExportError(f"verify_prompts: no file at {cfg.verify_prompts}")
    prompts = verify.read_prompts(cfg.verify_prompts, cfg.verify_count)
    evaluation = find_evaluation(Path(chain.top.folder), cfg.eval_run, cfg.evaluations_root)
    if cfg.push_to_hub:
        hub.check_credentials()

    tmp = run_dir.with_name(run_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    open_run_dir(tmp, cfg)
    seqs, ref_logits, base_logits = chain_logits(chain, prompts, cfg.verify_new_tokens, device)
    model, tokenizer = merged_model(chain, cfg.dtype, device)
    write_hf_folder(model, tokenizer, tmp, cfg.max_shard_size)
    del model

    from transformers import AutoModelForCausalLM, AutoTokenizer

    exported = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32).to(device).eval()
    reference = verify.reference(exported, AutoTokenizer.from_pretrained(tmp), prompts, seqs, cfg.verify_new_tokens)
    del exported
    checked = verification(cfg, seqs, ref_logits, base_logits, reference, len(prompts))

    made = {}
    for kind in kinds:
        for path in kind.build(tmp, tmp, cfg.run_name):
            made[kind.name] = {"file": path.relative_to(tmp).as_posix(), "bytes": path.stat().st_size,
                               "check": kind.check(path, reference)}

    record = {"status": "complete", "name": cfg.run_name, "dtype": cfg.dtype, "device": str(device),
              "made_from": cfg.run, "chain": [link.describe() for link in chain.links],
              "verification": checked, "kinds": made,
              "evaluation": None if evaluation is None else {"path": str(evaluation[0]), "policy": evaluation[2],
                                                             "eval_id": evaluation[1].get("eval_id")},
              "git": git_state(), "seconds": round(time.perf_counter() - started, 1), "files": file_table(tmp)}
    write_card(tmp, record, chain, evaluation, license_override=cfg.license, language=cfg.language,
               repo=cfg.push_to_hub or str(run_dir))
    (tmp / RECORD).write_text(json.dumps(record, indent=2, ensure_ascii=False))
    publish(tmp, run_dir)
    print(summary(run_dir, record))

    failed = [] if checked["passed"] else ["merged vs chain"]
    failed += [name for name, kind in made.items() if not kind["check"]["passed"]]
    if failed:
        raise ExportError(f"verification failed ({', '.join(failed)}): {run_dir} is kept, marked failed in {RECORD}, "
                          "and will not be pushed")
    if cfg.push_to_hub:
        print(f"pushed: {hub.push(run_dir, cfg.push_to_hub, endpoint=cfg.hub_endpoint, private=cfg.private)}")
    return run_dir


def summary(folder: Path, record: dict) -> str:
    v = record["verification"]
    lines = [f"export: {folder} ({record['dtype']}, {sum(f['bytes'] for f in record['files'].values()) / 2**20:.1f} MiB)",
             f"  merged vs unmerged chain: max |Δ log p| {v['max_abs']:.2e}, mean {v['mean_abs']:.2e} over {v['tokens']} "
             f"tokens (tolerance {v['tolerance']:.0e}): {'passed' if v['passed'] else 'FAILED'}"]
    for name, kind in record["kinds"].items():
        c = kind["check"]
        lines.append(f"  {name}: {kind['file']} {kind['bytes'] / 2**20:.1f} MiB, mean KL {c['mean_kl']:.2e}, greedy reply "
                     f"{'same' if c['greedy_reply_equal'] else 'differs'}: {'passed' if c['passed'] else 'FAILED'}")
    lines.append(f"  card: {folder / CARD}" + ("" if record["evaluation"] else " (no evaluation found to cite)"))
    return "\n".join(lines)
