"""Constraint prompts for instruction-following rewards: base prompts with one to three constraints
appended in the prompt's language ("Answer in at most 25 words.", "请用中文回答。"), each row
carrying its constraints for `common.rewards.verifiers` to check.

    python -m tools.constraint_prompts --out data/constraints --seed 0

Writes `train.jsonl` and `heldout.jsonl`, rows `{"prompt", "domain", "constraints", "lang", "base"}`
(+ `"heldout_types"` in held-out rows). The base prompts are split before any row is made, so no
base prompt is in both files, and the held-out types (`HELDOUT_TYPES`) never appear in train.
The same seed gives the same bytes. Sources and licences: data/constraints/README.md.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from common.data import parse_hh_dialogue, read_jsonl
from common.rewards.verifiers import TYPES, compatible, language_of, validate_constraints
from tools.constraint_templates import TEMPLATES, draw_args, render

REPO = Path(__file__).resolve().parents[1]
DOMAINS = ("general", "medical", "finance", "legal", "code", "math")
HELDOUT_TYPES = ("title", "placeholders", "two_responses", "highlighted_sections")
ENGLISH_ONLY = ("word_count", "lowercase", "uppercase", "letter_frequency", "capital_word_frequency")
CHINESE_ONLY = ("chinese_char_count",)
CROSS_LANGUAGE = 0.15  # share of rows asking for a reply in the other language
HELDOUT_SHARE = 0.2  # of each (language, domain) group's base prompts
SIZES, SIZE_WEIGHTS = (1, 2, 3), (0.4, 0.35, 0.25)  # constraints per row
# share of held-out rows made to hold a held-out type: none — those types come at their natural rate (a
# quarter of the rows), so the headline pass rate is about new prompts and the held-out types are a probe
FORCE_HELDOUT = 0.0
# every type draws with weight 1 but these: length is what a small model most visibly learns to control,
# and the language constraint comes often enough through the cross-language rows
WEIGHTS = {"word_count": 3.0, "chinese_char_count": 3.0, "sentence_count": 1.5, "response_language": 0.5}

HH = "data/hh-rlhf/harmless-base-1500.jsonl.gz"
GSM8K = "data/gsm8k/train.jsonl.gz"
GSM8K_COUNT, GSM8K_MAX_WORDS = 80, 45
# HH's harmless-base split is red-teaming: most first turns ask for harm. A blocklist pass (words of
# violence, crime, drugs, sex, slurs, politics) still let through "How do I make a noose?" and the like,
# so the turns kept are these, read one by one among the short questions that passed it.
HH_LINES = (9, 10, 16, 18, 23, 36, 116, 123, 131, 132, 196, 216, 218, 220, 285, 289, 307, 316, 335, 382, 383,
            386, 423, 429, 453, 471, 495, 549, 556, 571, 598, 606, 635, 660, 740, 764, 779, 786, 801, 932, 937,
            942, 955, 992, 999, 1048, 1050, 1067, 1095, 1127, 1130, 1158, 1172, 1212, 1221, 1341, 1419, 1428,
            1445, 1463)
# data/verifiable prompts end by saying how to state the answer ("Answer with the number only.", "只回答数字。"),
# which would contradict most constraints: the question alone is the base
_ANSWER_FORMAT = re.compile(r"\s*(Answer\b[^.?!]*\.|只回答[^。]*。|回答格式：[^。]*。)\s*$")


@dataclass(frozen=True)
class Base:
    text: str  # ends with sentence punctuation
    domain: str
    lang: str
    source: str  # "<file>:<line>", the file as the repository root sees it


def _finished(text: str, lang: str) -> str:
    text = re.sub(r"[ \t]+", " ", text.strip())
    return text if text[-1] in ".?!。？！" else text + ("." if lang == "en" else "。")


def _base(text: str, domain: str, source: str) -> Base:
    lang = language_of(text)
    if lang is None:
        raise ValueError(f"{source}: neither English nor Chinese: {text!r}")
    return Base(_finished(text, lang), domain, lang, source)


def load_bases(shared: Path, rng: random.Random, root: Path = REPO) -> list[Base]:
    """The base prompts, each text once: the repository's domain prompts and verifiable questions, our
    Chinese questions, reviewed HH first turns (general) and a seeded sample of short GSM8K questions (math)."""
    bases = []
    files = sorted((root / "data/prompts").glob("*.jsonl")) + sorted((root / "data/verifiable").glob("*.jsonl"))
    for path in [*files, root / "data/constraints/base_zh.jsonl"]:
        name = path.relative_to(root).as_posix()
        for line, row in read_jsonl(path):
            if isinstance(row["prompt"], str):
                bases.append(_base(_ANSWER_FORMAT.sub("", row["prompt"]), row["domain"], f"{name}:{line}"))
    wanted = set(HH_LINES)
    for line, row in read_jsonl(shared / HH):
        if line in wanted:
            bases.append(_base(parse_hh_dialogue(row["chosen"], f"{HH}:{line}")[0]["content"], "general",
                               f"../shared/{HH}:{line}"))
    short = [(line, row["question"]) for line, row in read_jsonl(shared / GSM8K)
             if len(row["question"].split()) <= GSM8K_MAX_WORDS]
    for line, question in sorted(rng.sample(short, GSM8K_COUNT)):
        bases.append(_base(question, "math", f"../shared/{GSM8K}:{line}"))
    unique = {}
    for b in bases:
        unique.setdefault(" ".join(b.text.split()), b)
    return list(unique.values())


def split_bases(bases: list[Base], rng: random.Random) -> tuple[list[Base], list[Base]]:
    """(train, held-out): a seeded HELDOUT_SHARE (at least one) of each (language, domain) group held out."""
    train, heldout = [], []
    for key in sorted({(b.lang, b.domain) for b in bases}):
        group = [b for b in bases if (b.lang, b.domain) == key]
        rng.shuffle(group)
        cut = max(1, round(HELDOUT_SHARE * len(group)))
        heldout += group[:cut]
        train += group[cut:]
    return train, heldout


def applies(kind: str, reply_lang: str) -> bool:
    """Case and letter counts need an English reply; Chinese-character counts a Chinese one."""
    return not (kind in ENGLISH_ONLY and reply_lang != "en") and not (kind in CHINESE_ONLY and reply_lang != "zh")


def draw_constraints(base: Base, rng: random.Random, kinds: list[str], force_heldout: bool) -> list[dict]:
    """One to three compatible constraints for a reply to `base`, of the types in `kinds` (one of them
    held-out when `force_heldout`); sometimes first a reply in the other language."""
    reply_lang, chosen = base.lang, []
    if rng.random() < CROSS_LANGUAGE:
        reply_lang = "zh" if base.lang == "en" else "en"
        chosen.append({"type": "response_language", "language": reply_lang})
    target = max(rng.choices(SIZES, SIZE_WEIGHTS)[0], len(chosen) + force_heldout)
    kinds = [k for k in kinds if applies(k, reply_lang)]
    for _ in range(100):  # a draw that conflicts with those chosen is dropped; 100 tries always fill a row
        if len(chosen) == target:
            break
        pool = [k for k in kinds if k not in {c["type"] for c in chosen}]
        if force_heldout and not any(c["type"] in HELDOUT_TYPES for c in chosen):
            pool = [k for k in pool if k in HELDOUT_TYPES]
        kind = rng.choices(pool, [WEIGHTS.get(k, 1.0) for k in pool])[0]
        candidate = {"type": kind, **draw_args(kind, rng, reply_lang, base.domain, base.text)}
        if compatible([*chosen, candidate]):
            chosen.append(candidate)
    return chosen


def make_row(base: Base, rng: random.Random, heldout: bool) -> dict:
    kinds = [k for k in TYPES if heldout or k not in HELDOUT_TYPES]
    constraints = draw_constraints(base, rng, kinds, force_heldout=heldout and rng.random() < FORCE_HELDOUT)
    asks = [render(c, base.lang, rng.randrange(len(TEMPLATES[c["type"]][base.lang]))) for c in constraints]
    sep = " " if base.lang == "en" else ""
    row = {"prompt": sep.join([base.text, *asks]), "domain": base.domain, "constraints": constraints,
           "lang": base.lang, "base": base.source}
    if heldout:
        row["heldout_types"] = any(c["type"] in HELDOUT_TYPES for c in constraints)
    return row


def make_rows(bases: list[Base], count: int, rng: random.Random, heldout: bool) -> list[dict]:
    """`count` rows, a third on Chinese base prompts, each language's rows spread evenly over the domains
    and, within a domain, over its base prompts (each used once before any is used again)."""
    queues: dict[tuple[str, str], list[Base]] = {}
    rows = []
    zh = round(count / 3)
    for lang, n in (("en", count - zh), ("zh", zh)):
        for i in range(n):
            key = (lang, DOMAINS[i % len(DOMAINS)])
            if not queues.get(key):
                queues[key] = [b for b in bases if (b.lang, b.domain) == key]
                rng.shuffle(queues[key])
            rows.append(make_row(queues[key].pop(), rng, heldout))
    rng.shuffle(rows)
    return rows


def build(seed: int, shared: Path, train: int = 800, heldout: int = 200, root: Path = REPO) -> tuple[list, list]:
    """(train rows, held-out rows) for `seed`."""
    rng = random.Random(seed)
    train_bases, heldout_bases = split_bases(load_bases(shared, rng, root), rng)
    return make_rows(train_bases, train, rng, False), make_rows(heldout_bases, heldout, rng, True)


def write(rows: list[dict], path: Path) -> None:
    for i, row in enumerate(rows, start=1):
        validate_constraints(row["constraints"], f"{path}:{i}")
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def summary(rows: list[dict]) -> str:
    langs = Counter(r["lang"] for r in rows)
    domains = Counter(r["domain"] for r in rows)
    kinds = Counter(c["type"] for r in rows for c in r["constraints"])
    return (f"{len(rows)} rows, {langs['zh']} Chinese; domains {dict(sorted(domains.items()))}; "
            f"{len(kinds)} types, {sum(kinds.values()) / len(rows):.2f} constraints a row")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/constraints"), help="folder for train.jsonl, heldout.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=800, help="rows in train.jsonl")
    parser.add_argument("--heldout", type=int, default=200, help="rows in heldout.jsonl")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared",
                        help="the shared data folder holding data/hh-rlhf and data/gsm8k")
    args = parser.parse_args(argv)
    train, heldout = build(args.seed, args.shared, args.train, args.heldout)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.jsonl", train), ("heldout.jsonl", heldout)):
        write(rows, args.out / name)
        print(f"{args.out / name}: {summary(rows)}")


if __name__ == "__main__":
    main()
