"""What an evaluation leaves in its run folder, and the table it prints.

- `samples.jsonl`: every reply with its scores;
- `report.png`: win-rate over the baseline with its interval, overall and per domain (a
  withheld length-controlled reading marked, its reason and the warnings underneath), and
  reward-model score against KL per policy;
- `report.html`: one self-contained page, the warnings, the figures and then every prompt with
  the policies' replies side by side — replies are untrusted text, so everything is HTML-escaped;
- `eval.json`: every figure, the config and the seeds — written last, under a temporary name
  and renamed, so a run stopped half-way never leaves one that looks finished.
"""

from __future__ import annotations

import html
import json
import math
import os
import textwrap
from pathlib import Path

from common.data.prompts import Prompt
from common.pipeline import EVAL_FILE
from evaluation import instructions
from evaluation import sanity as judge_sanity
from evaluation.policies import Reply


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def write_samples(run_dir: Path, replies: list[Reply], prompts: list[Prompt], name: str = "samples.jsonl") -> Path:
    rows = []
    for r in sorted(replies, key=lambda r: (r.prompt, r.sample, r.policy)):
        p = prompts[r.prompt]
        rows.append(json.dumps({
            "policy": r.policy, "prompt_index": r.prompt, "sample": r.sample, "domain": p.domain,
            "prompt": p.messages, "reference": p.reference, "reply": r.text, "length": r.length,
            "ended": r.ended, "logprob": r.logprob, "ref_logprob": r.ref_logprob, **r.scores,
            **({"constraints": p.constraints, "followed": r.followed} if r.followed is not None else {}),
        }, ensure_ascii=False))
    path = run_dir / name
    _atomic_write(path, "\n".join(rows) + "\n")
    return path


def write_report(run_dir: Path, report: dict) -> Path:
    path = run_dir / EVAL_FILE
    _atomic_write(path, json.dumps(report, indent=2, ensure_ascii=False))
    return path


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


def _ci(x: dict | None, pct: bool = False, signed: bool = False) -> str:
    if x and x.get("withheld"):
        return "withheld"
    if not x or x.get("mean") is None or math.isnan(x["mean"]):
        return "—"
    if pct:
        return f"{100 * x['mean']:.0f}% [{100 * x['low']:.0f}, {100 * x['high']:.0f}]"
    fmt = "+.2f" if signed else ".2f"
    return f"{x['mean']:{fmt}} [{x['low']:{fmt}}, {x['high']:{fmt}}]"


def _value(x, fmt: str) -> str:
    """A figure's point value (an interval's mean or a number), or — when missing."""
    v = x.get("mean") if isinstance(x, dict) else x
    return "—" if v is None or math.isnan(v) else format(v, fmt)


def _columns(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return ["  ".join(str(v).ljust(w) for v, w in zip(r, widths)).rstrip() for r in [head, *rows]]


# the hollow-policy figures the table shows: (column, key in the `hollow` block, format)
HOLLOW_COLUMNS = (("duplicated", "duplicate_share_normalised", ".0%"), ("zero overlap", "zero_overlap_share", ".0%"),
                  ("prompt overlap", "prompt_overlap", ".2f"), ("distinct-1", "distinct_1", ".2f"),
                  ("distinct-2", "distinct_2", ".2f"), ("self-BLEU", "self_bleu", ".2f"),
                  ("ρ(RM, length)", "rm_length_spearman", "+.2f"))


def table(report: dict, nested: bool = False) -> str:
    """The summary printed at the end of a run (and shown at the top of report.html); each further
    reading (`also_decode`) follows in a section of its own (`nested`: such a section, whose warnings
    the main report already lists)."""
    base = report["baseline"]
    head = ["policy", "RM score", f"win vs {base}", "length-controlled", "mixed reward", "KL (nats)", "length", "EOS",
            "empty"]
    rows = []
    for name, s in report["policies"].items():
        c = report["comparisons"].get(name, {})
        rows.append([name, _ci(s.get("reward_model"), signed=True), _ci(c.get("win_rate"), pct=True) if c else "baseline",
                     _ci(c.get("lc_win_rate"), pct=True) if c else "", _ci(s.get("mixed_reward"), signed=True),
                     _ci(s.get("kl")), f"{s['length']['mean']:.1f}", f"{100 * s['eos_rate']['mean']:.0f}%",
                     f"{100 * s.get('empty_rate', 0.0):.0f}%"])
    lines = _columns(head, rows)
    for name, c in report["comparisons"].items():
        if "by_domain" in c:
            parts = [f"{d} {_ci(v['win_rate'], pct=True)}" for d, v in c["by_domain"].items()]
            lines.append(f"{name} vs {base} by domain: " + "; ".join(parts))
        lc = c.get("lc_win_rate") or {}
        if lc.get("withheld"):
            lines.append(f"{name}'s length-controlled win-rate is withheld: {lc['withheld']}")
        elif lc.get("caution"):
            lines.append(f"{name}'s length-controlled win-rate {lc['caution']}")
    bias = report.get("reward_model_length_bias") or {}
    if bias:
        lines.append(f"reward model prefers the shorter reply in {_ci(bias['shorter_preferred'], pct=True)} of "
                     f"unequal-length pairs; Spearman ρ(score, length) = {bias['spearman_score_length']:+.2f}")
    signs = {name: s["hollow"] for name, s in report["policies"].items() if "hollow" in s}
    if signs:
        lines.append("signs of a hollow policy (docs/evaluation.md):")
        lines += _columns(["policy", *(col for col, _, _ in HOLLOW_COLUMNS)],
                          [[name, *(_value(h.get(key), fmt) for _, key, fmt in HOLLOW_COLUMNS)] for name, h in signs.items()])
    lines += judge_sanity.table_lines(report.get("reward_model_sanity"))
    lines += instructions.table_lines(report)
    for name, body in report.get("decodings", {}).items():
        how = "greedy" if body["decoding"] == "greedy" else f"sampled at T {body['temperature']:g}"
        lines += ["", f"--- the same policies read at {name} ({how}, one reply per prompt):", table(body, nested=True)]
    if not nested:
        lines += report.get("warnings", [])
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# The figure
# ---------------------------------------------------------------------------------------------


def plot(run_dir: Path, report: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    comps = report["comparisons"]
    follows = report.get("instructions")
    fig, axes = plt.subplots(1, 3 if follows else 2, figsize=(18 if follows else 12, 4.5))
    ax1, ax2 = axes[0], axes[1]
    if follows:
        plot_instructions(axes[2], follows)
    domains = sorted({d for c in comps.values() for d in c.get("by_domain", {})})
    groups = ["all", *domains]
    width = 0.8 / max(1, 2 * len(comps))
    withheld = []
    for i, (name, c) in enumerate(comps.items()):
        if "win_rate" not in c:
            continue
        for j, (key, label) in enumerate((("win_rate", "raw"), ("lc_win_rate", "length-controlled"))):
            points = [c[key]] + [c["by_domain"][d][key] for d in domains]
            xs = [g + (2 * i + j) * width - 0.4 + width / 2 for g in range(len(groups))]
            for x, p in zip(xs, points):  # a withheld reading is a mark, not a point
                if p.get("withheld"):
                    ax1.text(x, 0.03, "length-controlled: withheld", rotation=90, ha="center", va="bottom", fontsize=7,
                             color="grey")
            shown = [(x, p) for x, p in zip(xs, points) if p.get("mean") is not None]
            if shown:
                ys = [p["mean"] for _, p in shown]
                err = [[m - p["low"] for m, (_, p) in zip(ys, shown)], [p["high"] - m for m, (_, p) in zip(ys, shown)]]
                ax1.errorbar([x for x, _ in shown], ys, yerr=err, fmt="o" if j == 0 else "s", capsize=3,
                             label=f"{name} ({label})")
        if c["lc_win_rate"].get("withheld"):
            withheld.append(f"{name}: length-controlled withheld — {c['lc_win_rate']['withheld']}")
    ax1.axhline(0.5, color="grey", lw=1, ls="--")
    ax1.set_xticks(range(len(groups)), groups)
    ax1.set_xlim(-0.5, len(groups) - 0.5)  # the whole of every group, withheld marks included
    ax1.set_ylim(0, 1)
    ax1.set_ylabel(f"win-rate over {report['baseline']} (95% CI)")
    ax1.set_title("Reward-model win-rate on held-out prompts")
    if ax1.get_legend_handles_labels()[0]:
        ax1.legend(fontsize=8)
    for name, s in report["policies"].items():
        if "reward_model" not in s or "kl" not in s:
            continue
        x, y = s["kl"], s["reward_model"]
        ax2.errorbar([x["mean"]], [y["mean"]], xerr=[[x["mean"] - x["low"]], [x["high"] - x["mean"]]],
                     yerr=[[y["mean"] - y["low"]], [y["high"] - y["mean"]]], fmt="o", capsize=3, label=name)
    ax2.set_xlabel("KL to the reference (nats per reply)")
    ax2.set_ylabel("reward-model score (normalised)")
    ax2.set_title("Reward against KL")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(fontsize=8)
    notes = [textwrap.fill(n, 150) for n in withheld + report.get("warnings", [])]
    if notes:
        fig.text(0.01, 0.01, "\n".join(notes), fontsize=7, va="bottom", color="firebrick")
    fig.tight_layout(rect=(0, min(0.5, 0.04 * sum(n.count("\n") + 1 for n in notes)), 1, 1))
    path = run_dir / "report.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_instructions(ax, block: dict) -> None:
    """Prompt-level strict pass rate per policy, overall and per subset, with 95% intervals."""
    groups = ["all", *sorted({k for s in block["policies"].values() for k in s["subsets"]})]
    names = list(block["policies"])
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        s = block["policies"][name]
        points = [s["prompt_strict"]] + [s["subsets"].get(g, {}).get("prompt_strict") for g in groups[1:]]
        xs = [g + i * width - 0.4 + width / 2 for g in range(len(groups))]
        shown = [(x, p) for x, p in zip(xs, points) if p and p.get("mean") is not None and not math.isnan(p["mean"])]
        ys = [p["mean"] for _, p in shown]
        err = [[m - p["low"] for m, (_, p) in zip(ys, shown)], [p["high"] - m for m, (_, p) in zip(ys, shown)]]
        ax.bar([x for x, _ in shown], ys, width=width * 0.9, yerr=err, capsize=3, label=name)
    ax.set_xticks(range(len(groups)), groups, rotation=20, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("prompts with every instruction followed (strict)")
    ax.set_title("Instruction following (rules) on held-out prompts")
    ax.legend(fontsize=8)


# ---------------------------------------------------------------------------------------------
# The page
# ---------------------------------------------------------------------------------------------

_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;width:100%;margin-bottom:1.5em}
td,th{border:1px solid #ccc;padding:6px;vertical-align:top;text-align:left}
th{background:#f3f3f3}pre{white-space:pre-wrap;margin:0;font-family:inherit}.score{color:#555;font-size:.85em}
.prompt{background:#fafafa}
.warning{background:#fdecea;border-left:4px solid #c62828;padding:8px;font-weight:600}"""


def write_html(run_dir: Path, report: dict, replies: list[Reply], prompts: list[Prompt], limit: int | None) -> Path:
    """Every string that came from a model, a prompt file or a config goes through html.escape."""
    e = html.escape
    names = list(report["policies"])
    by_key = {(r.prompt, r.sample, r.policy): r for r in replies}
    shown = sorted({r.prompt for r in replies})[:limit]
    samples = sorted({r.sample for r in replies})
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Evaluation {e(report['run_name'])}</title>",
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>Evaluation: {e(report['run_name'])}</h1>",
             f"<p>{report['prompts']['total']} held-out prompts, baseline <b>{e(report['baseline'])}</b>. "
             "Intervals are 95% bootstrap intervals over prompts.</p>",
             *(f"<p class='warning'>{e(w)}</p>" for w in report.get("warnings", [])),
             f"<pre>{e(table(report))}</pre>",
             "<h2>Replies</h2><table><tr><th>prompt</th>" + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr>"]
    for i in shown:
        p = prompts[i]
        head = f"<b>[{e(p.domain)}]</b> <pre>{e(p.messages[-1]['content'])}</pre>"
        if p.reference:
            head += f"<div class='score'>reference: {e(p.reference)}</div>"
        for k in samples:
            cells = []
            for n in names:
                r = by_key.get((i, k, n))
                if r is None:
                    cells.append("<td></td>")
                    continue
                score = " · ".join(f"{key} {v:+.2f}" for key, v in r.scores.items() if key in ("rm", "mixed"))
                if r.followed is not None:
                    score += " · " + " ".join(f"{'✓' if ok else '✗'}{c['type']}"
                                              for ok, c in zip(r.followed["strict"], p.constraints))
                cells.append(f"<td><pre>{e(r.text) or '<i>(empty)</i>'}</pre><div class='score'>{e(score)} · "
                             f"{r.length} tokens{'' if r.ended else ' · no EOS'}</div></td>")
            label = head if k == samples[0] else f"<div class='score'>sample {k + 1}</div>"
            parts.append(f"<tr><td class='prompt'>{label}</td>{''.join(cells)}</tr>")
    parts.append("</table></body></html>")
    path = run_dir / "report.html"
    _atomic_write(path, "\n".join(parts))
    return path


def flat_figures(report: dict, prefix: str = "eval") -> dict[str, float]:
    """The report's headline numbers as flat keys for trackers: `eval/<policy>/<figure>` (and
    `…/low`, `…/high`), `eval/<policy>/win_rate/<domain>`, `eval/<policy>/hollow/<figure>` with
    `…/hollow/warning` 1 when the policy's win came with a warning, and
    `eval/<policy>/lc_win_rate/withheld` 1 in place of a withheld length-controlled win-rate; each further
    reading's under `eval/<reading>/<policy>/…`."""
    out: dict[str, float] = {}

    def put(key: str, ci: dict | None) -> None:
        if ci and ci.get("mean") is not None and not math.isnan(ci["mean"]):
            out[key], out[key + "/low"], out[key + "/high"] = ci["mean"], ci["low"], ci["high"]

    for name, s in report["policies"].items():
        for fig in ("reward_model", "mixed_reward", "kl", "length", "eos_rate"):
            put(f"{prefix}/{name}/{fig}", s.get(fig))
        for key, value in s.get("hollow", {}).items():
            if isinstance(value, dict):
                put(f"{prefix}/{name}/hollow/{key}", value)
            elif isinstance(value, float) and not math.isnan(value):
                out[f"{prefix}/{name}/hollow/{key}"] = value
        warned = any(w.startswith(f"warning: {name}'s ") for w in report.get("warnings", []))
        out[f"{prefix}/{name}/hollow/warning"] = float(warned)
    for name, c in report["comparisons"].items():
        for fig in ("win_rate", "lc_win_rate", "mixed_win_rate"):
            put(f"{prefix}/{name}/{fig}", c.get(fig))
        if (c.get("lc_win_rate") or {}).get("withheld"):  # trackers hold numbers: the reason is in eval.json and the table
            out[f"{prefix}/{name}/lc_win_rate/withheld"] = 1.0
        for domain, d in c.get("by_domain", {}).items():
            put(f"{prefix}/{name}/win_rate/{domain}", d["win_rate"])
    for key, ci in [*instructions.flat(report).items(), *judge_sanity.flat(report.get("reward_model_sanity")).items()]:
        put(f"{prefix}/{key}", ci)
    for name, body in report.get("decodings", {}).items():
        out.update(flat_figures(body, f"{prefix}/{name}"))
    return out
