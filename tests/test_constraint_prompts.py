"""The constraint-prompt generator and the files it made: rows that validate, seeded output, no
incompatible constraint sets, disjoint base prompts, held-out types kept out of train, phrasing in the
prompt's language."""

import gzip
import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from common.rewards.verifiers import compatible, conflict, language_of, validate_constraints
from tools import constraint_prompts as gen
from tools.constraint_templates import TEMPLATES, render

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "data/constraints"
KEYS = {"prompt", "domain", "constraints", "lang", "base"}


def read(path):
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A stand-in for ../shared: HH dialogues and GSM8K rows in the real files' shapes."""
    root = tmp_path_factory.mktemp("shared")
    (root / "data/hh-rlhf").mkdir(parents=True)
    (root / "data/gsm8k").mkdir(parents=True)
    with gzip.open(root / gen.HH, "wt", encoding="utf-8") as f:
        for i in range(1, 1501):
            dialogue = f"\n\nHuman: What is a good hobby number {i}?\n\nAssistant: Reading."
            f.write(json.dumps({"chosen": dialogue, "rejected": dialogue}) + "\n")
    with gzip.open(root / gen.GSM8K, "wt", encoding="utf-8") as f:
        for i in range(200):
            f.write(json.dumps({"question": f"Tom has {i} apples and buys 3 more. How many does he have?",
                                "answer": f"{i} + 3 = {i + 3}\n#### {i + 3}"}) + "\n")
    return root


@pytest.fixture(scope="module")
def built(shared):
    return {seed: gen.build(seed, shared) for seed in (0, 1, 2)}


def files():
    return {"train": read(SHIPPED / "train.jsonl"), "heldout": read(SHIPPED / "heldout.jsonl")}


def reply_language(row):
    chosen = [c["language"] for c in row["constraints"] if c["type"] == "response_language"]
    return chosen[0] if chosen else row["lang"]


def check_rows(train, heldout):
    """Everything the row format promises, for one (train, held-out) pair."""
    for name, rows in (("train", train), ("heldout", heldout)):
        for i, row in enumerate(rows, start=1):
            where = f"{name}:{i}"
            assert set(row) == KEYS | ({"heldout_types"} if name == "heldout" else set()), where
            validate_constraints(row["constraints"], where)
            assert 1 <= len(row["constraints"]) <= 3, where
            assert compatible(row["constraints"]), f"{where}: {conflict(row['constraints'])}"
            assert row["lang"] in ("en", "zh") and row["domain"] in gen.DOMAINS, where
            language = reply_language(row)
            for c in row["constraints"]:
                assert gen.applies(c["type"], language), f"{where}: {c['type']} on a {language} reply"
                asks = [render(c, row["lang"], i) for i in range(len(TEMPLATES[c["type"]][row["lang"]]))]
                assert any(a in row["prompt"] for a in asks), f"{where}: no {row['lang']} phrasing of {c['type']}"
    held = set(gen.HELDOUT_TYPES)
    assert not any(c["type"] in held for row in train for c in row["constraints"])
    assert all(row["heldout_types"] == any(c["type"] in held for c in row["constraints"]) for row in heldout)
    # both kinds of held-out row, the held-out types at their natural rate (about a quarter of the rows)
    assert 0.15 <= sum(r["heldout_types"] for r in heldout) / len(heldout) <= 0.7
    assert not {r["base"] for r in train} & {r["base"] for r in heldout}


def test_every_phrasing_is_in_its_language():
    for kind, by_lang in TEMPLATES.items():
        assert set(by_lang) == {"en", "zh"} and kind in gen.TYPES
        for lang, phrasings in by_lang.items():
            assert len(phrasings) >= 2 and len(set(phrasings)) == len(phrasings)
            for text in phrasings:
                assert language_of(re.sub(r"\{\w+\}", "", text)) == lang, text
    assert set(TEMPLATES) == set(gen.TYPES)


def test_the_shipped_files_keep_every_promise_of_the_row_format():
    data = files()
    assert (len(data["train"]), len(data["heldout"])) == (800, 200)
    check_rows(data["train"], data["heldout"])
    for rows in data.values():
        assert abs(sum(r["lang"] == "zh" for r in rows) / len(rows) - 1 / 3) < 0.02
        domains = Counter(r["domain"] for r in rows)
        assert set(domains) == set(gen.DOMAINS)
        assert max(domains.values()) - min(domains.values()) <= 3
        # English prompts asking for a Chinese reply and the other way round
        assert {(r["lang"], reply_language(r)) for r in rows} == {("en", "en"), ("en", "zh"), ("zh", "zh"), ("zh", "en")}
    train_types = {c["type"] for r in data["train"] for c in r["constraints"]}
    heldout_types = {c["type"] for r in data["heldout"] for c in r["constraints"]}
    assert len(train_types) == len(gen.TYPES) - len(gen.HELDOUT_TYPES) and heldout_types == set(gen.TYPES)


def test_the_shipped_base_prompts_are_disjoint_by_text_too():
    data = files()

    def base_text(row):  # the prompt before its first constraint's phrasing
        c = row["constraints"][0]
        asks = [render(c, row["lang"], i) for i in range(len(TEMPLATES[c["type"]][row["lang"]]))]
        return min(row["prompt"].find(a) for a in asks if a in row["prompt"])

    texts = {name: {r["prompt"][: base_text(r)].strip() for r in rows} for name, rows in data.items()}
    assert texts["train"] and not texts["train"] & texts["heldout"]


def test_the_shipped_files_are_what_the_command_makes(tmp_path):
    shared = REPO.parent / "shared"
    if not (shared / gen.HH).exists() or not (shared / gen.GSM8K).exists():
        pytest.skip("../shared/data is not beside this checkout")
    gen.main(["--out", str(tmp_path), "--seed", "0", "--shared", str(shared)])
    for name in ("train.jsonl", "heldout.jsonl"):
        assert (tmp_path / name).read_bytes() == (SHIPPED / name).read_bytes(), name


def test_same_seed_same_bytes_other_seed_other_rows(shared, tmp_path):
    for out in ("a", "b"):
        gen.main(["--out", str(tmp_path / out), "--seed", "7", "--shared", str(shared)])
    gen.main(["--out", str(tmp_path / "c"), "--seed", "8", "--shared", str(shared)])
    for name in ("train.jsonl", "heldout.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "c" / name).read_bytes()


def test_generated_rows_keep_every_promise_for_other_seeds(built):
    for train, heldout in built.values():
        check_rows(train, heldout)


def test_thousands_of_drawn_constraint_sets_are_all_compatible(shared):
    rng = random.Random(3)
    bases = gen.load_bases(shared, rng)
    kinds = list(gen.TYPES)
    for _ in range(3000):
        base = rng.choice(bases)
        constraints = gen.draw_constraints(base, rng, kinds, force_heldout=rng.random() < 0.5)
        validate_constraints(constraints, base.source)
        assert compatible(constraints), (base.source, constraints, conflict(constraints))


def test_base_prompts_lose_their_answer_format_and_keep_their_domain(shared):
    bases = gen.load_bases(shared, random.Random(0))
    verifiable = [b for b in bases if b.source.startswith("data/verifiable/")]
    assert len(verifiable) == 120
    assert not any("Answer" in b.text or "只回答" in b.text or "回答格式" in b.text for b in verifiable)
    assert all(b.source.split("/")[-1].startswith(b.domain) for b in verifiable)
    assert sum(b.lang == "zh" for b in verifiable) == 40
    hh = [b for b in bases if gen.HH in b.source]
    assert [int(b.source.rsplit(":", 1)[1]) for b in hh] == list(gen.HH_LINES)
    assert {b.domain for b in hh} == {"general"}
    gsm8k = [b for b in bases if gen.GSM8K in b.source]
    assert len(gsm8k) == gen.GSM8K_COUNT and {b.domain for b in gsm8k} == {"math"}
    ours = [b for b in bases if b.source.startswith("data/constraints/base_zh.jsonl")]
    assert len(ours) >= 60 and {b.lang for b in ours} == {"zh"}
    assert {b.domain for b in ours} == set(gen.DOMAINS)
