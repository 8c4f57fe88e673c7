"""The judge's own check: the sanity suite (`common/rewards/sanity.py`) of the reward model that
judges the policies, in eval.json (`reward_model_sanity`), the table, the page and the trackers.

Two readings, each when it exists: `heldout` — the suite run here on the evaluation's held-out
prompts that have a reference answer (the good reply), scored by the judge (an ensemble judge's
combined score); `saved` — the figures the reward-model stage saved with each judge folder
(`sanity.json`, on its validation prompts). A kind the judge fails (under 80%) is a warning: its
win-rates may reward that kind of reply.
"""

from __future__ import annotations

from common.data.prompts import Prompt
from common.rewards.sanity import WARN_BELOW, describe_failures, failing, run_suite, saved_figures

HELDOUT = "held-out prompts, reference answers"


def measure(spec: str | list[str], scorer, prompts: list[Prompt], seed: int, batch_size: int) -> dict:
    """{"heldout": figures or None (fewer than 2 prompts with a reference), "saved": {folder: figures}}."""
    refs = [p for p in prompts if p.reference]
    heldout = None
    if len(refs) >= 2:
        heldout = run_suite(scorer, [p.messages for p in refs], [p.reference for p in refs], HELDOUT, batch_size, seed)
    return {"heldout": heldout, "saved": {k: v for k, v in saved_figures(spec).items() if v}}


def readings(block: dict | None) -> list[tuple[str, dict]]:
    """(label, figures) of every reading in the block, held-out first."""
    if not block:
        return []
    out = [("held-out references", block["heldout"])] if block.get("heldout") else []
    return out + [(f"saved with {folder}", figures) for folder, figures in block.get("saved", {}).items()]


def table_lines(block: dict | None) -> list[str]:
    lines = []
    for label, figures in readings(block):
        parts = [f"{kind} {100 * v['mean']:.0f}% [{100 * v['low']:.0f}, {100 * v['high']:.0f}]"
                 for kind, v in figures["kinds"].items()]
        lines.append(f"judge's sanity suite ({label}, {figures['prompts']} prompts), the good reply above: "
                     + "; ".join(parts))
    return lines


def warning(block: dict | None) -> str | None:
    for label, figures in readings(block):
        bad = failing(figures, WARN_BELOW)
        if bad:
            return (f"warning: the judge reward model fails its sanity suite ({label}): it scores the good reply "
                    f"above the bad one only {describe_failures(bad)} of the time — its win-rates may reward those "
                    "replies; read them (docs/evaluation.md)")
    return None


def flat(block: dict | None) -> dict[str, dict]:
    """`reward_model_sanity/<kind>` → the held-out reading's pass rate (else the first saved one's)."""
    found = readings(block)
    if not found:
        return {}
    return {f"reward_model_sanity/{kind}": v for kind, v in found[0][1]["kinds"].items()}
