"""Anchor pairs (reward_model/anchors.py): which pairs are added, by hand; the recipe's checks; and a
tiny reward model that prefers the empty reply without them and ranks it last with them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from common.config import ConfigError, parse_args
from common.data.preferences import PreferenceGroup
from common.rewards.sanity import DEFLECTIONS, REFUSALS
from reward_model.__main__ import main
from reward_model.anchors import ANCHOR_DEFLECTIONS, ANCHOR_REFUSALS, anchor_groups, counts
from reward_model.config import RMStageConfig

from helpers.stages import REPO


def group(question: str, best: str, worse: str, where: str) -> PreferenceGroup:
    return PreferenceGroup([{"role": "user", "content": question}], [worse, best], [2, 1], where=where)


GROUPS = [group("Capital of France?", "Paris is the capital of France.", "London.", "a:1"),
          group("Capital of France?", "It is Paris.", "No idea.", "a:2"),  # the same prompt again: not a new anchor
          group("两个加三个是多少？", "两个加三个是五个。", "不知道。", "a:3"),
          group("How do I sort a list in Python?", "Call sorted(xs) or xs.sort().", "Use a loop.", "a:4"),
          group("Help me pick a lock.", ANCHOR_REFUSALS["en"][0], "Sure, take a pin.", "a:5")]


def test_one_pair_per_distinct_prompt_with_the_kinds_in_turn_by_hand():
    added = anchor_groups(GROUPS, ["empty", "deflection", "echo"], share=1.0, seed=0)
    assert len(added) == 4  # 4 distinct prompts; the repeated one's first group gives the good reply
    assert [g.responses[0] for g in added] == ["Paris is the capital of France.", "两个加三个是五个。",
                                               "Call sorted(xs) or xs.sort().", ANCHOR_REFUSALS["en"][0]]
    assert all(g.ranks == [1, 2] for g in added)
    assert [g.meta["anchor"] for g in added] == ["empty", "deflection", "echo", "empty"]
    assert added[0].responses[1] == "" and added[2].responses[1] == "How do I sort a list in Python?"
    assert added[1].responses[1] == ANCHOR_DEFLECTIONS["zh"][1]  # the prompt's language, the phrases in turn
    assert added[1].where == "anchor deflection on a:3" and counts(added) == {"empty": 2, "deflection": 1, "echo": 1}


def test_the_anchor_phrases_are_not_the_suite_s_so_the_suite_still_measures_unseen_replies():
    for table, suite in ((ANCHOR_DEFLECTIONS, DEFLECTIONS), (ANCHOR_REFUSALS, REFUSALS)):
        assert set(table) == set(suite)
        assert not {p.lower() for v in table.values() for p in v} & {p.lower() for v in suite.values() for p in v}


def test_a_kind_that_equals_the_good_reply_gives_way_to_the_next_and_the_share_is_a_seeded_draw():
    only = anchor_groups(GROUPS[4:] + GROUPS[:1], ["refusal", "cut"], share=1.0, seed=0)
    assert [(g.where, g.meta["anchor"]) for g in only] == [("anchor cut on a:5", "cut"), ("anchor cut on a:1", "cut")]
    half = anchor_groups(GROUPS, ["empty"], share=0.5, seed=3)
    assert len(half) == 2 and half == anchor_groups(GROUPS, ["empty"], share=0.5, seed=3)
    assert anchor_groups(GROUPS, ["empty"], share=0.0, seed=0) == [] and anchor_groups(GROUPS, [], 1.0, 0) == []


@pytest.mark.parametrize("override, message", [
    (["--anchors", "[empty, silence]"], "anchors"),
    (["--anchors", "[empty, empty]"], "names a kind twice"),
    (["--anchor_share", "1.5"], "anchor_share must be in"),
])
def test_bad_anchor_settings_name_the_field(override, message):
    with pytest.raises((ConfigError, ValueError), match=message):
        parse_args(RMStageConfig, ["--config", str(REPO / "configs/reward_model/tiny.yaml"), *override])


def longer_is_worse(path: Path, n: int = 200, seed: int = 0) -> Path:
    """Every rejected reply is the chosen one plus words: a model of these pairs alone learns that fewer
    tokens are better, and so that the empty reply beats every answer."""
    rng = random.Random(seed)
    words = "apple river stone cloud seven table green music paper window orange summer yellow bridge".split()
    with path.open("w") as f:
        for _ in range(n):
            a, b = rng.randint(2, 99), rng.randint(2, 99)
            good = f"It is {a + b}."
            bad = good + " " + " ".join(rng.choice(words) for _ in range(rng.randint(2, 6)))
            f.write(json.dumps({"prompt": f"What is {a} plus {b}?", "chosen": good, "rejected": bad}) + "\n")
    return path


def train(model_dir: Path, out: Path, data: Path, *extra: str) -> dict:
    main(["--config", str(REPO / "configs/reward_model/tiny.yaml"), "--model", str(model_dir), "--output_root",
          str(out), "--data", f"[{{path: {data}}}]", "--max_steps", "80", "--eval_steps", "80", "--save_steps", "80",
          "--batch_size", "8", "--learning_rate", "0.01", "--val_fraction", "0.2", "--sanity_prompts", "40",
          "--trackers", "[]", *extra])
    run = out / "tiny"
    return {"sanity": json.loads((run / "model/sanity.json").read_text())["kinds"],
            "report": json.loads((run / "data_report.json").read_text())}


def test_empty_anchors_turn_a_model_that_prefers_silence_into_one_that_ranks_it_last(tiny_model_dir, tmp_path, one_thread):
    data = longer_is_worse(tmp_path / "pairs.jsonl")
    plain = train(tiny_model_dir, tmp_path / "plain", data)
    anchored = train(tiny_model_dir, tmp_path / "anchored", data, "--anchors", "[empty]", "--anchor_share", "0.5")
    assert plain["sanity"]["empty"]["mean"] <= 0.4, plain["sanity"]["empty"]
    assert anchored["sanity"]["empty"]["mean"] >= 0.9, anchored["sanity"]["empty"]
    step = anchored["report"][-1]
    # half of the ≈ 160 distinct training prompts (a few sums repeat a prompt); the 40 validation prompts get none
    assert step["step"] == "anchor pairs added" and set(step["added"]) == {"empty"}
    assert 75 <= step["added"]["empty"] == step["kept"] - step["in"] <= 80
    assert not any(s["step"] == "anchor pairs added" for s in plain["report"])
