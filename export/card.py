"""The model card: `README.md` in Hugging Face's format (YAML metadata, then Markdown), generated from
the export record (export.json), the chain of run folders and the evaluation that judged the model.

    write_card(folder, record, chain, evaluation)   # evaluation: (eval.json path, report, policy) or None

Every figure is read from those files; the prose around them is the same for every export.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from export.chain import Chain
from export.sources import base_identity, data_sources

CARD = "README.md"


def interval(x: dict | None, pct: bool = False, digits: int = 3) -> str:
    """{mean, low, high} → "0.420 [0.300, 0.550]" (pct: "78.0% [70.0, 86.0]"); a withheld figure → its reason."""
    if not x:
        return "—"
    if x.get("withheld"):
        return f"withheld: {x['withheld']}"
    if x.get("mean") is None or (isinstance(x["mean"], float) and math.isnan(x["mean"])):
        return "—"
    if pct:
        return f"{100 * x['mean']:.1f}% [{100 * x['low']:.1f}, {100 * x['high']:.1f}]"
    return f"{x['mean']:.{digits}f} [{x['low']:.{digits}f}, {x['high']:.{digits}f}]"


def evaluation_rows(report: dict, policy: str) -> list[tuple[str, str, str, dict | None]]:
    """(figure, key for the model index, value text, the figure) of `policy` in an evaluation report,
    in the order the card shows them; figures the evaluation did not judge are left out."""
    base = report["baseline"]
    comp = (report.get("comparisons") or {}).get(policy) or {}
    mine = report["policies"][policy]
    rows = [
        (f"win-rate over {base} (reward model)", "win_rate", interval(comp.get("win_rate"), True), comp.get("win_rate")),
        ("length-controlled win-rate", "lc_win_rate", interval(comp.get("lc_win_rate"), True), comp.get("lc_win_rate")),
        (f"mixed-reward win-rate over {base}", "mixed_win_rate", interval(comp.get("mixed_win_rate"), True),
         comp.get("mixed_win_rate")),
        ("reward-model score", "reward_model", interval(mine.get("reward_model")), mine.get("reward_model")),
        ("mixed reward", "mixed_reward", interval(mine.get("mixed_reward")), mine.get("mixed_reward")),
        ("KL to the reference (nats per reply)", "kl", interval(mine.get("kl")), mine.get("kl")),
        ("reply length (tokens)", "length", interval(mine.get("length"), digits=1), mine.get("length")),
        ("replies ending with EOS", "eos_rate", interval(mine.get("eos_rate"), True), mine.get("eos_rate")),
    ]
    follows = ((report.get("instructions") or {}).get("policies") or {}).get(policy)
    if follows:
        for level in ("prompt_strict", "prompt_loose", "constraint_strict", "constraint_loose"):
            what = level.replace("_", "-level ", 1)
            rows.append((f"instruction following, {what} (IFEval rules)", f"if_{level}", interval(follows[level], True),
                         follows[level]))
    caution = (comp.get("lc_win_rate") or {}).get("caution")
    if caution:
        rows[1] = (rows[1][0], rows[1][1], f"{rows[1][2]} (caution: {caution})", rows[1][3])
    return [r for r in rows if r[3] is not None]


def model_index(name: str, report: dict, policy: str, source: str) -> list[dict]:
    """The Hub's `model-index` block: one result on the held-out prompts, a metric per judged figure
    (withheld ones left out), values rounded to 4 decimals."""
    metrics = [{"name": label, "type": key, "value": round(float(fig["mean"]), 4)}
               for label, key, _, fig in evaluation_rows(report, policy)
               if fig.get("mean") is not None and not math.isnan(fig["mean"])]
    return [{"name": name, "results": [{
        "task": {"type": "text-generation", "name": "held-out chat prompts"},
        "dataset": {"name": f"held-out prompts ({report['prompts']['total']} prompts)", "type": "rlhfkit-heldout",
                    "config": report.get("run_name", "evaluation")},
        "metrics": metrics, "source": {"name": "rlhfkit evaluation", "url": source}}]}]


def metadata(record: dict, chain: Chain, evaluation, license_override: str | None, language: list[str]) -> dict:
    hub_id, licence = base_identity(chain)
    tags = ["rlhfkit", "text-generation", *sorted({link.stage for link in chain.links if link.stage})]
    if any(Path(f).suffix == ".gguf" for f in record["files"]):
        tags.append("gguf")
    meta = {"license": license_override or licence or "other", "language": language, "library_name": "transformers",
            "pipeline_tag": "text-generation", "tags": tags}
    if hub_id:
        meta = {"base_model": hub_id, "base_model_relation": "finetune", **meta}
    if evaluation is not None:
        path, report, policy = evaluation
        meta["model-index"] = model_index(record["name"], report, policy, str(path))
    return meta


def _chain_section(chain: Chain, record: dict) -> list[str]:
    lines = ["## How it was made", "",
             "Each step's model is the next one's base; the adapters were merged in this order "
             f"(in fp32, then cast to {record['dtype']}).", "",
             "| step | stage | model | run folder | content SHA-256 | git commit |", "|---|---|---|---|---|---|"]
    for i, link in enumerate(record["chain"]):
        git = link.get("git") or {}
        commit = (git.get("commit") or "")[:12] + (" (uncommitted changes)" if git.get("dirty") else "")
        kind = "LoRA adapter" if link["adapter"] else "full weights"
        lines.append(f"| {i} | {link['stage'] or 'base'} | `{link['spec']}` ({kind}) | {link['run'] or '—'} | "
                     f"`{(link.get('sha256') or 'hub')[:16]}` | {commit or '—'} |")
    for link in chain.links:
        if link.run_dir is None:
            continue
        lines += ["", f"<details><summary>{link.stage} recipe ({link.run_dir}/config.yaml) and inputs</summary>", "",
                  "```yaml", yaml.safe_dump(link.config, sort_keys=False, allow_unicode=True).rstrip(), "```", ""]
        for key, item in (link.provenance.get("inputs") or {}).items():
            lines.append(f"- `{key}`: {item['path']} — sha256 `{item['sha256']}`")
        lines += ["", "</details>"]
    return lines + [""]


def _data_section(chain: Chain) -> list[str]:
    rows = data_sources(chain)
    lines = ["## Data", ""]
    if not rows:
        return lines + ["No data file is recorded in the runs' provenance.", ""]
    lines += ["| data | read by | licence | SHA-256 |", "|---|---|---|---|"]
    lines += [f"| {r['path']} | {', '.join(r['used_by'])} | {r['licence']} | `{r['sha256'][:16]}` |" for r in rows]
    return lines + [""]


def _evaluation_section(evaluation) -> list[str]:
    lines = ["## Evaluation", ""]
    if evaluation is None:
        return lines + ["No evaluation of this model was found (`make eval`, then export again, or name one with "
                        "`--eval_run`). Without one, nothing here says the model is better than its base.", ""]
    path, report, policy = evaluation
    cfg = report.get("config") or {}
    judge = f"judged by the reward model `{cfg['reward_model']}`" if cfg.get("reward_model") else "with no reward-model judge"
    files = ", ".join(f"`{p['path']}`" for p in cfg.get("prompts", [])) or "its prompt files"
    lines += [f"From `{path}` (evaluation `{report.get('eval_id')}`): `{policy}` against the baseline "
              f"`{report['baseline']}` on {report['prompts']['total']} prompts ({files}), "
              f"{cfg.get('samples_per_prompt', '?')} replies each, {judge}, KL measured to "
              f"`{report.get('kl_reference') or report['baseline']}`; 95% bootstrap intervals over prompts.", "",
              "| figure | value [95% interval] |", "|---|---|"]
    lines += [f"| {label} | {text} |" for label, _, text, _ in evaluation_rows(report, policy)]
    warnings = report.get("warnings") or []
    if warnings:
        lines += ["", "**Warnings raised by the evaluation** (signs of a hollow policy: a reward-model win that "
                  "reading the replies may not confirm):", ""] + [f"- {w}" for w in warnings]
    return lines + [""]


def _sensitivity(record: dict) -> str:
    effect = record["verification"]["adapter_effect"]
    if len(record["chain"]) == 1:
        return "There are no adapters: the export is the base model written anew."
    said = (f"The adapters themselves move log p by up to {effect['max_abs']:.2e} (mean {effect['mean_abs']:.2e}) "
            "from the base")
    if record["verification"]["sensitive"]:
        return said + "."
    return said + ": no more than the tolerance, so this check cannot tell the export from its base."


def _verification_section(record: dict) -> list[str]:
    v = record["verification"]
    lines = ["## Verification", "",
             f"The merged weights, loaded by plain `transformers`, against the unmerged chain (fp32, every adapter "
             f"active) on {v['tokens']} tokens of {v['prompts']} prompts with the chain's greedy replies: "
             f"largest |Δ log p| {v['max_abs']:.2e}, mean {v['mean_abs']:.2e} (tolerance {v['tolerance']:.0e} for "
             f"{record['dtype']}): **{'passed' if v['passed'] else 'FAILED'}**. " + _sensitivity(record), ""]
    if record.get("kinds"):
        lines += ["| file | size | mean KL to the export (nats) | same greedy reply | check |", "|---|---|---|---|---|"]
        for kind in record["kinds"].values():
            c = kind["check"]
            lines.append(f"| {kind['file']} | {kind['bytes'] / 2**20:.1f} MiB | {c['mean_kl']:.2e} | "
                         f"{'yes' if c['greedy_reply_equal'] else 'no'} | {'passed' if c['passed'] else 'FAILED'} |")
        lines.append("")
    return lines


def _usage_section(record: dict, repo: str) -> list[str]:
    lines = ["## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
             f'model = AutoModelForCausalLM.from_pretrained("{repo}")', f'tokenizer = AutoTokenizer.from_pretrained("{repo}")',
             'ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hello!"}], add_generation_prompt=True,',
             '                                    return_tensors="pt", return_dict=True)',
             "print(tokenizer.decode(model.generate(**ids, max_new_tokens=64)[0]))", "```", ""]
    ggufs = [k["file"] for k in (record.get("kinds") or {}).values() if k["file"].endswith(".gguf")]
    if ggufs:
        lines += ["GGUF files for llama.cpp and Ollama (chat template included):", "", "```bash",
                  f"llama-cli -m {ggufs[0]} -cnv", "```", ""]
    return lines


def _limits_section(chain: Chain, evaluation) -> list[str]:
    stages = [link.stage for link in chain.links if link.stage]
    lines = ["## Intended use and limits", "",
             f"A research model from an rlhfkit pipeline ({' → '.join(['base', *stages])}), for studying and developing "
             "aligned domain assistants. Its rewards came from models and rules trained on small data; a reward-model "
             "win is a claim about that reward model, to be read beside the replies (the evaluation's `report.html`) "
             "and confirmed by people. It is not a source of medical, legal or financial advice. Some of its training "
             "data is red-teaming dialogue with offensive requests.", ""]
    if evaluation is not None and evaluation[1].get("warnings"):
        lines += ["Its evaluation raised the warnings above: treat its win-rate as unconfirmed.", ""]
    return lines


def render_card(record: dict, chain: Chain, evaluation=None, license_override: str | None = None,
                language: list[str] | None = None, repo: str | None = None) -> str:
    meta = metadata(record, chain, evaluation, license_override, language or ["en"])
    summary = " → ".join([f"`{chain.base.spec}`", *(f"{link.stage or 'adapter'} (LoRA)" for link in chain.adapters)])
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {record['name']}", "",
             f"A chat model aligned with rlhfkit: {summary}, merged into full {record['dtype']} weights. This card was "
             "generated by `python -m export` from the run folders; every figure is read from them.", ""]
    lines += _usage_section(record, repo or record["name"])
    lines += _evaluation_section(evaluation)
    lines += _chain_section(chain, record)
    lines += _data_section(chain)
    lines += _verification_section(record)
    lines += _limits_section(chain, evaluation)
    return "\n".join(lines)


def write_card(folder: str | Path, record: dict, chain: Chain, evaluation=None, **kwargs) -> Path:
    path = Path(folder) / CARD
    path.write_text(render_card(record, chain, evaluation, **kwargs), encoding="utf-8")
    return path
