"""Signs of a hollow policy: a reward-model win earned by deflecting ("What a wonderful
question!", "", "I'm sorry for any confusion.") rather than answering. Pure functions over a
policy's replies; `judges.summarize` puts their figures beside the baseline's and `warnings`
turns a win that comes with a jump in them into a line people read before the win-rate.

Text is read as `common.data.text.words` after NFKC (full-width letters and digits fold to ASCII):
lower-cased words, each CJK character its own token, punctuation dropped.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Hashable, Sequence

import numpy as np

from common.data.text import is_cjk, ngrams, words
from common.stats import bootstrap_ci, cluster_bootstrap, cluster_jackknife, cluster_means, spearman

# A win is distrusted when a figure is worse than the baseline's by more than its margin:
# sampled answers to different prompts almost never coincide, so a tenth of replies shared
# across prompts is a template, not chance
DUPLICATE_MARGIN = 0.10
# a short on-topic answer ("Yes.", "42") can miss the prompt's words, so only a clear jump counts
ZERO_OVERLAP_MARGIN = 0.15
# distinct-2 of healthy policies of one model family moves by a few hundredths with length;
# a drop of 0.15 is the same few phrases reused
DISTINCT2_MARGIN = 0.15
# self-BLEU between answers to different prompts sits near 0 (little shared beyond function
# words); +0.15 is replies built from one template
SELF_BLEU_MARGIN = 0.15
# several signs moving together are stronger evidence than one: two or more, each worse by more
# than half its margin, also warn (GRPO on constraints: zero overlap +14 points, distinct-2 −0.13,
# self-BLEU +0.09, each under its margin, and 27 of 30 replies read blind were hollow)
TOGETHER = 2
BLEU_ORDER = 4

# Words that carry no topic: function words and request verbs ("please explain …"). Our own list.
EN_STOP = frozenset("""
a about above after again against all also am an and any are as at be because been before being below between both
but by can could did do does doing done down during each either else even ever every few for from further get gets
give go had has have having he her here hers herself him himself his how i if in into is it its itself just know
least less let like list make many may me might mine more most much must my myself need no nor not now of off often
on once one only or other our ours ourselves out over own please rather really said same say see shall she should
show so some such tell than that the their theirs them themselves then there these they thing things this those
through to too under until up upon us use very want was way ways we well were what when where whether which while
who whom whose why will with without would write yes yet you your yours yourself yourselves describe explain help
i'm it's don't can't
""".split())
# Chinese function characters: a run of CJK characters is cut at them before taking bigrams
# ("北京的天气怎么样" → 北京, 天气, 样)
ZH_STOP = frozenset("的了是在我你您他她它们吗呢吧啊呀和与及或也都就这那个一"
                    "有不没请什么怎如何为把被给对从到会能可以要说让很还又着过得地之其些哪谁几")
_BREAK = re.compile(r"[\W_]+", re.UNICODE)


def tokens(text: str) -> list[str]:
    """`common.data.text.words` after NFKC: "ＡＢＣ" and "ABC" are the same word."""
    return words(unicodedata.normalize("NFKC", text))


def normalise(text: str) -> str:
    """The text with case, width (NFKC), punctuation and runs of white space folded: "What a
    wonderful question！" and "what a  wonderful question" are one reply."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    kept = "".join(" " if unicodedata.category(c).startswith("P") else c for c in folded)
    return " ".join(kept.split())


# ---------------------------------------------------------------------------------------------
# The detectors
# ---------------------------------------------------------------------------------------------


def duplicated(texts: Sequence[str], prompts: Sequence[Hashable]) -> list[bool]:
    """For each reply: does its text also answer another prompt? (Several samples for one
    prompt that coincide are not counted: that is low temperature, not a template.)"""
    where: dict[str, set] = defaultdict(set)
    for t, p in zip(texts, prompts, strict=True):
        where[t].add(p)
    return [len(where[t]) >= 2 for t in texts]


def distinct_n(token_lists: Sequence[list[str]], n: int) -> float:
    """Distinct n-grams over all n-grams, pooled over every reply (NaN when there are none)."""
    grams = [g for toks in token_lists for g in ngrams(toks, n)]
    return len(set(grams)) / len(grams) if grams else math.nan


def self_bleu(token_lists: Sequence[list[str]], prompts: Sequence[Hashable], order: int = BLEU_ORDER) -> list[float]:
    """Each reply's sentence BLEU (0–1) against every reply to the other prompts as references
    (NaN for an empty reply, or with no other prompt). The matching n-gram counts are gathered
    here in one pass (the reference set differs per prompt, and sacrebleu's `sentence_score`
    would re-read every reference for every reply); sacrebleu turns the counts into BLEU
    (exponential smoothing, effective order, closest reference length, shorter on a tie), so
    the figure equals `BLEU(tokenize="none", effective_order=True).sentence_score` on the
    space-joined tokens."""
    from sacrebleu.metrics import BLEU

    counts = [Counter(g for n in range(1, order + 1) for g in ngrams(toks, n)) for toks in token_lists]
    # per n-gram, its largest count in the replies to each prompt, then the two largest of those
    best: dict[tuple, dict[Hashable, int]] = defaultdict(dict)
    for c, p in zip(counts, prompts, strict=True):
        for g, k in c.items():
            if k > best[g].get(p, 0):
                best[g][p] = k
    top2 = {g: sorted(((k, p) for p, k in by.items()), key=lambda kp: -kp[0])[:2] for g, by in best.items()}
    lengths = np.array([len(t) for t in token_lists])
    index = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
    owner = np.array([index[p] for p in prompts])
    out = []
    for toks, c, p in zip(token_lists, counts, prompts, strict=True):
        others = lengths[(owner != index[p]) & (lengths > 0)]  # the references' lengths
        if not toks or others.size == 0:
            out.append(math.nan)
            continue
        correct, total = [0] * order, [0] * order
        for g, k in c.items():
            total[len(g) - 1] += k
            ref = next((kk for kk, q in top2[g] if q != p), 0)
            correct[len(g) - 1] += min(k, ref)
        diff = np.abs(others - len(toks))
        ref_len = int(others[diff == diff.min()].min())
        out.append(BLEU.compute_bleu(correct, total, len(toks), ref_len, smooth_method="exp", effective_order=True,
                                     max_ngram_order=order).score / 100)
    return out


def content_units(text: str) -> set[str]:
    """The words that say what a text is about: non-CJK words outside `EN_STOP` (a plural's
    final s dropped, so "plants" meets "plant"), and CJK bigrams of runs cut at `ZH_STOP` (a
    lone character left between two cuts stands for itself)."""
    units: set[str] = set()
    for chunk in _BREAK.split(unicodedata.normalize("NFKC", text).lower()):
        run: list[str] = []
        for tok in [*words(chunk), ""]:  # "" ends the last run
            if is_cjk(tok) and tok not in ZH_STOP:
                run.append(tok)
                continue
            units.update(run if len(run) == 1 else ("".join(b) for b in ngrams(run, 2)))
            run = []
            if tok and not is_cjk(tok) and tok not in EN_STOP:
                units.add(tok[:-1] if len(tok) > 3 and tok.endswith("s") and not tok.endswith("ss") else tok)
    return units


def prompt_overlap(prompt: str, reply: str) -> float:
    """The share of the prompt's content units that the reply uses (NaN when it has none)."""
    asked = content_units(prompt)
    return len(asked & content_units(reply)) / len(asked) if asked else math.nan


def pooled_ci(statistic, prompts: Sequence[Hashable], seed: int, resamples: int) -> dict:
    """A pooled figure with its interval over prompts; a quarter of the resamples (≥ 200) is plenty
    for the percentile ends of a figure that only sits beside the win-rate."""
    return cluster_bootstrap(statistic, prompts, seed, max(200, resamples // 4))


def hollow_figures(prompt_texts: Sequence[str], texts: Sequence[str], prompts: Sequence[Hashable],
                   scores: Sequence[float] | None = None, lengths: Sequence[float] | None = None, seed: int = 0,
                   resamples: int = 2000) -> dict:
    """Every sign for one policy's replies: `texts[i]` answers prompt `prompts[i]`, whose text is
    `prompt_texts[i]`. Shares and means come with 95% intervals over prompts (each prompt the
    mean of its replies; the per-reply values are computed on the whole set, then resampled);
    ρ, a property of the pooled set, is recomputed on each resample of prompts, and distinct-n
    on the set without each prompt in turn (a jackknife: resampling would repeat replies).
    Empty replies are duplicates of each other and share nothing with the prompt, but have no
    n-grams for distinct-n and self-BLEU. `scores`/`lengths` (the reward model's, tokens) add
    ρ(score, length)."""

    def ci(values: Sequence[float]) -> dict:
        kept = [(v, p) for v, p in zip(values, prompts) if not math.isnan(v)]
        return bootstrap_ci(cluster_means(*zip(*kept)), seed, resamples) if kept else bootstrap_ci([])

    toks = [tokens(t) for t in texts]
    norm = [normalise(t) for t in texts]
    overlap = [prompt_overlap(q, t) for q, t in zip(prompt_texts, texts)]
    repeats = Counter(n for n, dup in zip(norm, duplicated(norm, prompts)) if dup)
    out = {
        "replies": len(texts),
        "duplicate_share": ci([float(d) for d in duplicated(texts, prompts)]),
        "duplicate_share_normalised": ci([float(d) for d in duplicated(norm, prompts)]),
        # a resample with replacement repeats prompts, and repeats are what distinct-n counts against
        "distinct_1": cluster_jackknife(lambda rows: distinct_n([toks[i] for i in rows], 1), prompts),
        "distinct_2": cluster_jackknife(lambda rows: distinct_n([toks[i] for i in rows], 2), prompts),
        "self_bleu": ci(self_bleu(toks, prompts)),
        "prompt_overlap": ci(overlap),
        "zero_overlap_share": ci([float(v == 0) if not math.isnan(v) else math.nan for v in overlap]),
    }
    if repeats:
        text, _ = repeats.most_common(1)[0]
        out["most_repeated"] = {"text": text[:80], "prompts": len({p for n, p in zip(norm, prompts) if n == text})}
    if scores is not None and lengths is not None:
        score_array, length_array = np.asarray(scores, dtype=float), np.asarray(lengths, dtype=float)
        out["rm_length_spearman"] = pooled_ci(lambda rows: spearman(score_array[rows], length_array[rows]), prompts, seed,
                                              resamples)
    return out


# ---------------------------------------------------------------------------------------------
# Warnings
# ---------------------------------------------------------------------------------------------


def _mean(x) -> float:
    """A figure's value: the mean of an interval, or the number itself (NaN when missing)."""
    value = x.get("mean") if isinstance(x, dict) else x
    return math.nan if value is None else float(value)


def _pct(v: float) -> str:
    return f"{100 * v:.0f}%"


def _num(v: float) -> str:
    return f"{v:.2f}"


# (figure, margin, +1 when higher is worse / −1 when lower is, how it reads, its number format)
SIGNS = (
    ("duplicate_share_normalised", DUPLICATE_MARGIN, +1, "{} duplicated replies", _pct),
    ("zero_overlap_share", ZERO_OVERLAP_MARGIN, +1, "{} replies sharing no content word with their prompt", _pct),
    ("distinct_2", DISTINCT2_MARGIN, -1, "distinct-2 {}", _num),
    ("self_bleu", SELF_BLEU_MARGIN, +1, "self-BLEU {}", _num),
)


def won(comparison: dict) -> bool:
    """A win: the reward-model (or else the mixed-reward) win-rate's interval lies above ½."""
    for key in ("win_rate", "mixed_win_rate"):
        low = comparison.get(key, {}).get("low")
        if low is not None and not math.isnan(low):
            return low > 0.5
    return False


def warning(name: str, figures: dict, baseline: str, base_figures: dict, win: bool) -> str | None:
    """One line when `name` won and a sign is worse than the baseline's by more than its margin —
    or `TOGETHER` signs each by more than half of theirs — naming each such sign with both values;
    None otherwise."""
    if not win:
        return None
    worse = []  # (how many margins worse, the sign's words)
    for key, margin, direction, reads, fmt in SIGNS:
        mine, base = _mean(figures.get(key)), _mean(base_figures.get(key))
        if not (math.isnan(mine) or math.isnan(base)) and direction * (mine - base) > margin / 2:
            top = figures.get("most_repeated") if key.startswith("duplicate") else None
            often = f"; most often \"{top['text']}\", to {top['prompts']} prompts" if top else ""
            worse.append((direction * (mine - base) / margin, f"{reads.format(fmt(mine))} ({baseline}: {fmt(base)}{often})"))
    parts = [words for times, words in worse if times > 1]
    if not parts and len(worse) >= TOGETHER:
        parts = [words for _, words in worse]
    if not parts:
        return None
    return f"warning: {name}'s win comes with {', '.join(parts)} — read the replies before trusting the win-rate"
