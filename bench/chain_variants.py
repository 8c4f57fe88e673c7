"""The default chain's variants, one row each: is a reward-model win a better model? (issue 22, item 4)

For each variant of `make ppo` (a reward model recipe, β, steps …) it reads what the runs already wrote
and prints one table row per decoding (sampled at the training temperature, and greedy):

  RM win     win-rate over SFT by the reward model PPO trained against, 95% interval over prompts
  LC win     the length-controlled win-rate (or why it was withheld)
  other RM   win-rate by a reward model the policy did not train against (another evaluation folder)
  member     win-rate by a held-out member: the same reward-model recipe with another seed, never trained
             against (`member_eval`, optional)
  hollow     the hollow-policy signs of the policy beside SFT's (duplicates, zero overlap, distinct-2)
  blind      read blind, pair by pair: better / worse / tie and the reader's win-rate (ties ½, bootstrap
             over pairs) — from a folder holding key.json (which policy wrote A and B) and verdicts.json
  wall, peak the chain's wall time (timing.json of each stage) and the highest peak resident memory

The variants are listed in a YAML file (docs/bench/chain-variants.yaml):

    - name: default
      runs: [runs/sft/default, runs/reward_model/default, runs/ppo/default]
      policy: ppo                                   # its name in the evaluation
      eval: runs/evaluation/ppo-vs-sft              # judged by the trained-against reward model
      other_rm_eval: runs/evaluation/ppo-vs-sft-anchored-rm
      member_eval: runs/evaluation/chain-member-rm     # optional: a held-out member of the same recipe
      blind: {sample: docs/bench/chain-blind/default-sample, greedy: docs/bench/chain-blind/default-greedy}

    .venv/bin/python bench/chain_variants.py docs/bench/chain-variants.yaml      (prints a Markdown table)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common.stats import bootstrap_ci  # noqa: E402
from common.timing import duration, read_timing  # noqa: E402


def pct(ci: dict | None) -> str:
    if not ci or ci.get("mean") is None:
        return "—"
    return f"{100 * ci['mean']:.0f}% [{100 * ci['low']:.0f}, {100 * ci['high']:.0f}]"


def reading(report: dict, decoding: str) -> dict:
    """The evaluation's body for one decoding: the main reading, or an `also_decode` one."""
    if decoding == "sample":
        return report
    return report.get("decodings", {}).get(decoding, {})


def blind_figures(folder: Path, policy: str) -> dict | None:
    """better/worse/tie of `policy` and its reader's win-rate, from key.json + verdicts.json."""
    if not (folder / "verdicts.json").is_file():
        return None
    key = json.loads((folder / "key.json").read_text())
    verdicts = json.loads((folder / "verdicts.json").read_text())
    scores, hollow = [], {"policy": 0, "baseline": 0}
    for pair, v in verdicts.items():
        slots = key[pair]
        mine = "A" if slots["A"] == policy else "B"
        scores.append(0.5 if v["verdict"] == "tie" else 1.0 if v["verdict"] == mine else 0.0)
        for slot in "AB":
            hollow["policy" if slot == mine else "baseline"] += bool(v.get(f"hollow_{slot}"))
    return {"better": scores.count(1.0), "worse": scores.count(0.0), "tie": scores.count(0.5),
            "win": bootstrap_ci(scores, seed=0), "hollow": hollow, "n": len(scores)}


def hollow_text(body: dict, policy: str, baseline: str) -> str:
    mine, base = body["policies"][policy].get("hollow", {}), body["policies"][baseline].get("hollow", {})
    out = []
    for key, label in (("duplicate_share_normalised", "dup"), ("zero_overlap_share", "no-overlap"),
                       ("distinct_2", "distinct-2")):
        if key in mine and key in base:
            out.append(f"{label} {mine[key]['mean']:.2f} ({base[key]['mean']:.2f})")
    return ", ".join(out)


def win_text(report: dict | None, decoding: str, policy: str) -> str:
    """The policy's win-rate over the baseline in one reading of an evaluation, or — without one."""
    body = reading(report, decoding) if report else {}
    return pct(body["comparisons"][policy]["win_rate"]) if body.get("comparisons") else "—"


def read_eval(folder: str, variant: str) -> dict:
    path = REPO / folder / "eval.json"
    if not path.is_file():
        raise SystemExit(f"variant {variant}: {path} is missing — run that evaluation first (the variants file names "
                         "the runs each row reads: docs/bench/rm-anchors-2026-12-07.md shows the commands)")
    return json.loads(path.read_text())


def rows(variant: dict) -> list[list[str]]:
    report = read_eval(variant["eval"], variant["name"])
    other = read_eval(variant["other_rm_eval"], variant["name"]) if variant.get("other_rm_eval") else None
    member = read_eval(variant["member_eval"], variant["name"]) if variant.get("member_eval") else None
    policy, baseline = variant.get("policy", "ppo"), report["baseline"]
    timings = [read_timing(REPO / r) for r in variant.get("runs", [])]
    wall = sum(t["total_seconds"] for t in timings if t)
    peaks = [t["peak_rss_gb"] for t in timings if t and "peak_rss_gb" in t]
    out = []
    for decoding in ("sample", "greedy"):
        body = reading(report, decoding)
        if not body.get("comparisons"):
            continue
        comp = body["comparisons"][policy]
        lc = comp.get("lc_win_rate") or {}
        lc_text = pct(lc) if lc.get("mean") is not None else f"withheld ({lc.get('withheld', 'no figure')})"
        blind = blind_figures(REPO / variant["blind"][decoding], policy) if decoding in variant.get("blind", {}) else None
        blind_text = (f"{blind['better']}/{blind['worse']}/{blind['tie']} → {pct(blind['win'])}; hollow "
                      f"{blind['hollow']['policy']} vs {blind['hollow']['baseline']} of {blind['n']}") if blind else "not read"
        length = f"{body['policies'][policy]['length']['mean']:.0f} ({body['policies'][baseline]['length']['mean']:.0f})"
        out.append([variant["name"], "T 1" if decoding == "sample" else decoding, pct(comp["win_rate"]), lc_text,
                    win_text(other, decoding, policy), win_text(member, decoding, policy),
                    length, hollow_text(body, policy, baseline), blind_text,
                    duration(wall) if wall else "—", f"{max(peaks):.1f} GiB" if peaks else "—"])
    return out


HEADER = ["variant", "decoding", "RM win", "LC win", "other RM win", "held-out member win", "length (SFT)", "hollow signs (SFT)",
          "blind better/worse/tie → reader win; hollow", "wall", "peak RSS"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", help="YAML list of variants (see the module docstring)")
    args = parser.parse_args()
    table = [HEADER] + [row for v in yaml.safe_load(Path(args.variants).read_text()) for row in rows(v)]
    print("| " + " | ".join(table[0]) + " |")
    print("|" + "---|" * len(table[0]))
    for row in table[1:]:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
