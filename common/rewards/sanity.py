"""A reward model's sanity suite (in the spirit of RewardBench, built from the user's own prompts):
for prompts that have a good reply — a reference answer, or a preference group's best reply —
the reward model must score that reply above replies any reader rejects at a glance:

- `empty`: the empty reply;
- `deflection`: praise of the question or an apology instead of an answer ("What a great
  question!", "很抱歉给您带来困惑。"), in the prompt's language;
- `refusal`: a refusal ("I'm sorry, but I can't help with that.") — a fair test on benign
  requests only: on harmlessness data a refusal may be the better reply (docs/reward_model.md);
- `other_prompt`: the good reply of a different prompt;
- `echo`: the prompt's last message repeated back;
- `cut`: the good reply cut mid-sentence after 40% of its words (each CJK character a word).

A kind's pass rate is the share of prompts where the good reply scores higher (a tie counts ½,
as in the reward model's accuracy), with a 95% bootstrap interval over prompts (`common.stats`).
Each prompt meets one deflection and one refusal, taken in turn from the lists, so every phrase is
tried across a suite. The reward-model stage runs the suite on its validation prompts and saves
the figures with the model (`sanity.json`); PPO reads them before it trusts the model.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from common.data import Message
from common.data.text import is_cjk, word_ends
from common.stats import bootstrap_ci

KINDS = ("empty", "deflection", "refusal", "other_prompt", "echo", "cut")
DEFLECTIONS = {
    "en": ("What a great question!", "What a wonderful question! I'm so glad you asked.", "I'm sorry for any confusion.",
           "Thank you for reaching out! I hope this helps.", "That's a really interesting question. P.S. Have a great day!"),
    "zh": ("这是一个很好的问题！", "感谢您的提问，希望这对您有帮助！", "很抱歉给您带来困惑。"),
}
REFUSALS = {
    "en": ("I'm sorry, but I can't help with that.", "I cannot assist with this request."),
    "zh": ("抱歉，我无法帮助你处理这个请求。",),
}
CUT_SHARE = 0.4
SANITY_FILE = "sanity.json"  # saved in a reward model's folder by the reward-model stage
WARN_BELOW = 0.8  # a pass rate under this is reported as a failure when no floor is set

# (prompts, responses, batch_size=…, normalize=…) → scores (B,): `RewardScorer`, an ensemble, or a hand-made one
Scorer = Callable[..., torch.Tensor]


@dataclass
class SanityItem:
    """One comparison: the good reply to prompt `index` against a `bad` reply of `kind`."""

    index: int
    kind: str
    bad: str


def language(text: str) -> str:
    """zh when the text holds a CJK character, else en: which deflections and refusals it meets."""
    return "zh" if any(is_cjk(c) for c in text) else "en"


def cut_reply(text: str, share: float = CUT_SHARE) -> str | None:
    """The reply up to the end of its first ⌊share · words⌋ words (at least one); None when the
    reply has fewer than two words, so no cut can leave it shorter yet non-empty."""
    ends = word_ends(text)
    if len(ends) < 2:
        return None
    keep = max(1, int(share * len(ends)))
    return text[: ends[keep - 1]]


def build_suite(prompts: Sequence[list[Message]], goods: Sequence[str], deflections: dict = DEFLECTIONS,
                refusals: dict = REFUSALS) -> list[SanityItem]:
    """The comparisons for prompts[i] with good reply goods[i]; a kind is left out for a prompt
    where its bad reply would equal the good one (a reply that is itself a refusal, one word that
    cannot be cut, a reply shared with the other prompt). `deflections`/`refusals`: {language:
    phrases} — the reward-model stage's anchor pairs pass phrases of their own, so the suite's stay unseen."""
    if len(prompts) != len(goods):
        raise ValueError(f"{len(prompts)} prompts but {len(goods)} good replies")
    items = []
    n = len(prompts)
    for i, (prompt, good) in enumerate(zip(prompts, goods)):
        question = prompt[-1]["content"]
        lang = language(question)
        bad = {
            "empty": "",
            "deflection": deflections[lang][i % len(deflections[lang])],
            "refusal": refusals[lang][i % len(refusals[lang])],
            "other_prompt": goods[(i + 1) % n] if n > 1 else None,  # the next prompt's: every good reply used once
            "echo": question,
            "cut": cut_reply(good),
        }
        items += [SanityItem(i, kind, text) for kind, text in bad.items()
                  if text is not None and text.strip() != good.strip()]
    return items


def score_suite(scorer: Scorer, prompts: Sequence[list[Message]], goods: Sequence[str], items: Sequence[SanityItem],
                batch_size: int = 16, seed: int = 0, resamples: int = 2000) -> dict:
    """Score every good reply once and every bad reply once → {"prompts": n, "kinds": {kind:
    {mean, low, high, n, margin}}}: `mean` the pass rate with its interval over prompts, `margin`
    the mean score difference good − bad in normalised scores (the scorer's saved std as the unit)."""
    pairs = [(i, goods[i]) for i in range(len(goods))] + [(it.index, it.bad) for it in items]
    scores = scorer([prompts[i] for i, _ in pairs], [text for _, text in pairs], batch_size=batch_size, normalize=True)
    scores = torch.as_tensor(scores, dtype=torch.float64).tolist()
    good_score, bad_score = scores[: len(goods)], scores[len(goods) :]
    kinds = {}
    for kind in KINDS:
        rows = [(it.index, good_score[it.index] - s) for it, s in zip(items, bad_score) if it.kind == kind]
        if not rows:
            continue
        passed = [1.0 if d > 0 else 0.5 if d == 0 else 0.0 for _, d in rows]  # one comparison per prompt and kind
        kinds[kind] = {**bootstrap_ci(passed, seed, resamples), "margin": sum(d for _, d in rows) / len(rows)}
    return {"prompts": len(goods), "kinds": kinds}


def run_suite(scorer: Scorer, prompts: Sequence[list[Message]], goods: Sequence[str], source: str,
              batch_size: int = 16, seed: int = 0) -> dict:
    """Build and score the suite; `source` says where the prompts and good replies came from."""
    figures = score_suite(scorer, prompts, goods, build_suite(prompts, goods), batch_size, seed)
    return {"source": source, **figures}


def failing(figures: dict, floor: float) -> list[tuple[str, float]]:
    """(kind, pass rate) of every kind whose pass rate is under `floor`, in `KINDS` order."""
    return [(k, v["mean"]) for k, v in figures.get("kinds", {}).items() if v["mean"] < floor]


def describe_failures(failures: list[tuple[str, float]]) -> str:
    return ", ".join(f"{kind} {100 * rate:.0f}%" for kind, rate in failures)


def format_sanity(figures: dict, floor: float = WARN_BELOW) -> str:
    """The printed block: one line per kind, its pass rate and interval, ✗ under `floor`."""
    lines = [f"reward-model sanity ({figures['prompts']} prompts, {figures.get('source', '')}): the good reply "
             "must score above"]
    for kind, v in figures["kinds"].items():
        mark = "✗" if v["mean"] < floor else "✓"
        lines.append(f"  {mark} {kind:<13} {100 * v['mean']:3.0f}% [{100 * v['low']:.0f}, {100 * v['high']:.0f}]  "
                     f"margin {v['margin']:+.2f}  ({v['n']} prompts)")
    return "\n".join(lines)


def read_saved(folder: str | Path) -> dict | None:
    """A reward model folder's saved sanity figures, or None when it has none."""
    path = Path(folder) / SANITY_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def saved_figures(spec: str | Sequence[str]) -> dict[str, dict | None]:
    """{folder: its saved figures or None} for the folders a `reward_model` setting names (one
    folder, an ensemble folder — its figures are its members' mean's —, or a list of either)."""
    return {folder: read_saved(folder) for folder in ([spec] if isinstance(spec, str) else list(spec))}
