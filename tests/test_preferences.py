import json

import pytest
from datasets import Dataset

from common.data import DataError
from common.data.preferences import read_preferences, row_to_group

PAIR = {"prompt": "q?", "chosen": "good", "rejected": "bad", "domain": "legal"}


def test_pair_ranking_and_hh_rows_become_groups():
    g = row_to_group(PAIR, "auto", "f:1")
    assert (g.prompt, g.responses, g.ranks, g.domain) == ([{"role": "user", "content": "q?"}], ["good", "bad"], [1, 2], "legal")
    conv = {
        "chosen": [{"role": "user", "content": "q?"}, {"role": "assistant", "content": "good"}],
        "rejected": [{"role": "user", "content": "q?"}, {"role": "assistant", "content": "bad"}],
    }
    assert row_to_group(conv, "auto", "f:1").responses == ["good", "bad"]
    explicit = {"prompt": [{"role": "user", "content": "q?"}], "chosen": [{"role": "assistant", "content": "good"}],
                "rejected": [{"role": "assistant", "content": "bad"}], "rank_gap": 2}
    assert row_to_group(explicit, "auto", "f:1").ranks == [1, 3]
    ranking = {"prompt": "q?", "responses": ["a", "b", "c"], "ranks": [2, 1, 2], "scores": [3, 5, 3]}
    g = row_to_group(ranking, "auto", "f:1")
    assert g.ranks == [2, 1, 2] and g.scores == [3, 5, 3] and g.domain == "general"
    hh = {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}
    g = row_to_group(hh, "auto", "f:1")
    assert g.prompt == [{"role": "user", "content": "hi"}] and g.responses == ["hello", "go away"]


@pytest.mark.parametrize(
    "row, problem",
    [
        ({"prompt": "q", "responses": ["only one"], "ranks": [1]}, "at least 2 responses"),
        ({"prompt": "q", "responses": ["a", "b"], "ranks": [1]}, "one rank per response"),
        ({"prompt": "q", "responses": ["a", "b"], "ranks": [0, 1]}, r"integers ≥ 1"),
        ({"prompt": "", "chosen": "a", "rejected": "b"}, "'prompt' is empty"),
        ({"prompt": "q", "chosen": "a"}, "unrecognised row .*prompt.*responses"),
        ({"chosen": "a", "rejected": "b"}, "missing field 'prompt'"),
        ({**PAIR, "margin": "big"}, "'margin' must be a number"),
        ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: x\n\nAssistant: y"},
         "differ before their last reply"),
    ],
)
def test_bad_rows_name_file_line_and_problem(tmp_path, row, problem):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(PAIR) + "\n" + json.dumps(row, ensure_ascii=False) + "\n")
    with pytest.raises(DataError, match=rf"p\.jsonl:2: .*{problem}"):
        read_preferences(path)


def test_unpaired_dialogues_can_be_skipped_and_reported(tmp_path):
    path = tmp_path / "hh.jsonl"
    bad = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: x\n\nAssistant: y"}
    good = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: a\n\nAssistant: c"}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    skipped: list[str] = []
    assert len(read_preferences(path, unpaired=skipped)) == 1
    assert skipped == [f"{path}:2"]


def test_datasets_folder_is_read_like_a_file(tmp_path):
    Dataset.from_list([PAIR, PAIR]).save_to_disk(str(tmp_path / "ds"))
    groups = read_preferences(tmp_path / "ds")
    assert len(groups) == 2 and groups[1].where.endswith("ds:row 1")
