"""Prompt sets: the row shapes (prompts, HH, GSM8K), row ranges, instructions, and the rule that
no evaluation recipe reads rows a training recipe trains on."""

import gzip
import json

import pytest

from common.config import ConfigError, from_dict, load_yaml
from common.data import DataError
from common.data.prompts import PromptSource, load_prompts, row_slice
from common.rewards.mixer import load_domains

from helpers.stages import REPO

DOMAINS = set(load_domains(REPO / "configs/domains"))


def write_jsonl(path, rows, gz=False):
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return str(path)


def gsm8k_rows(n):
    return [{"question": f"Tom has {i} apples and buys 2 more. How many now?", "answer": f"{i} + 2 = {i + 2}\n#### {i + 2:,}"}
            for i in range(998, 998 + n)]


def test_gsm8k_rows_become_math_prompts_with_the_final_number_as_reference(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl.gz", gsm8k_rows(3), gz=True)
    prompts = load_prompts([PromptSource(path=path, format="gsm8k", instruction="Answer after ####.")], DOMAINS, 0)
    by_line = sorted(prompts, key=lambda p: int(p.where.rsplit(":", 1)[1]))
    assert [p.reference for p in by_line] == ["1000", "1001", "1002"]  # "1,000" → "1000"
    assert {p.domain for p in prompts} == {"math"}
    assert by_line[0].messages == [{"role": "user", "content": "Tom has 998 apples and buys 2 more. How many now? "
                                                               "Answer after ####."}]
    auto = load_prompts([PromptSource(path=path)], DOMAINS, 0)  # the shape is recognised without format
    assert sorted(p.reference for p in auto) == ["1000", "1001", "1002"]


def test_rows_take_a_slice_of_the_file_in_file_order(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", gsm8k_rows(10))
    train = load_prompts([PromptSource(path=path, rows="0:7")], DOMAINS, 0)
    held_out = load_prompts([PromptSource(path=path, rows="7:")], DOMAINS, 0)
    assert sorted(int(p.where.rsplit(":", 1)[1]) for p in train) == list(range(1, 8))
    assert sorted(int(p.where.rsplit(":", 1)[1]) for p in held_out) == [8, 9, 10]
    with pytest.raises(DataError, match=r"g\.jsonl: rows '20:' selects nothing \(the file has 10 rows\)"):
        load_prompts([PromptSource(path=path, rows="20:")], DOMAINS, 0)


@pytest.mark.parametrize("spec", ["7", "a:b", "-1:3", "5:2", "1:2:3"])
def test_a_bad_row_range_is_a_config_error_naming_the_field(spec):
    with pytest.raises(ConfigError, match="rows"):
        from_dict(PromptSource, {"path": "x.jsonl", "rows": spec}, "recipe.yaml")
    with pytest.raises(ValueError):
        row_slice(spec)


def test_bad_gsm8k_rows_name_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [gsm8k_rows(1)[0], {"question": "How many?", "answer": "four"}])
    with pytest.raises(DataError, match=r"bad\.jsonl:2: a GSM8K 'answer' must be text ending with '#### <number>'"):
        load_prompts([PromptSource(path=path, format="gsm8k")], DOMAINS, 0)
    path = write_jsonl(tmp_path / "empty.jsonl", [{"question": " ", "answer": "#### 4"}])
    with pytest.raises(DataError, match=r"empty\.jsonl:1: 'question' must be non-empty text"):
        load_prompts([PromptSource(path=path, format="gsm8k")], DOMAINS, 0)


def test_a_source_domain_applies_to_rows_that_name_none(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "What is 2+2?", "reference": "4"},
                                              {"prompt": "Dosage?", "domain": "medical"}])
    prompts = load_prompts([PromptSource(path=path, domain="math")], DOMAINS, 0)
    assert sorted(p.domain for p in prompts) == ["math", "medical"]


def test_the_shared_gsm8k_split_reads_whole():
    path = REPO.parent / "shared/data/gsm8k/train.jsonl.gz"
    if not path.exists():
        pytest.skip("../shared/data/gsm8k is not beside this checkout")
    prompts = load_prompts([PromptSource(path=str(path), format="gsm8k")], DOMAINS, 0)
    assert len(prompts) == 7473 and all(p.reference.lstrip("-").replace(".", "").isdigit() for p in prompts)


def _row_ranges(recipe):
    """{resolved path: [slice, …]} of a recipe's prompt sources."""
    out = {}
    for src in load_yaml(recipe).get("prompts", []):
        rows = row_slice(src["rows"]) if src.get("rows") else slice(None, None)
        out.setdefault((recipe.parent.parent.parent / src["path"]).resolve(), []).append(rows)
    return out


def _overlap(a: slice, b: slice) -> bool:
    inf = float("inf")
    return max(a.start or 0, b.start or 0) < min(a.stop if a.stop is not None else inf, b.stop if b.stop is not None else inf)


def test_no_evaluation_recipe_reads_rows_a_training_recipe_trains_on():
    training = [_row_ranges(r) for r in (REPO / "configs/ppo").glob("*.yaml")]
    for recipe in (REPO / "configs/evaluation").glob("*.yaml"):
        for path, eval_ranges in _row_ranges(recipe).items():
            for train in training:
                for a in train.get(path, []):
                    assert not any(_overlap(a, b) for b in eval_ranges), (recipe.name, path)
