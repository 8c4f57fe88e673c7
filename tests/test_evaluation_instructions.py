"""The evaluation stage's instruction-following figures against hand-counted ones, and end to end."""

from __future__ import annotations

import json

import pytest

from common.data.prompts import Prompt
from evaluation import instructions
from evaluation.policies import Reply

from helpers.stages import REPO

LOWER = {"type": "lowercase"}
SHORT = {"type": "word_count", "relation": "at_most", "n": 3}
CHINESE = {"type": "response_language", "language": "zh"}


def prompt(constraints, lang="en", heldout=False) -> Prompt:
    return Prompt([{"role": "user", "content": "question"}], "general", None, "t", constraints=constraints, lang=lang,
                  heldout_types=heldout)


PROMPTS = [prompt([LOWER, SHORT]), prompt([CHINESE], lang="zh"), prompt([SHORT], heldout=True), prompt(None)]


def reply(policy: str, i: int, text: str, sample: int = 0) -> Reply:
    return Reply(policy, i, sample, text, [1, 2], True)


def judged(texts: dict[str, list[str]]) -> list[Reply]:
    replies = [reply(policy, i, t) for policy, ts in texts.items() for i, t in enumerate(ts)]
    instructions.judge(replies, PROMPTS)
    return replies


def test_pass_rates_equal_the_hand_counted_ones():
    # base:  prompt 0 fails lowercase (1 of 2 followed), prompt 1 follows, prompt 2 fails (4 words)
    # new:   prompt 0 follows both, prompt 1 fails (English), prompt 2 follows
    replies = judged({"base": ["Yes it is", "是的。", "one two three four", "x"],
                      "new": ["yes it is", "Yes.", "one two", "x"]})
    assert replies[3].followed is None and "if_strict" not in replies[3].scores  # no constraints, no verdict
    report = instructions.summarize(replies, PROMPTS, ["base", "new"], "base", seed=0, resamples=200)
    base, new = report["policies"]["base"], report["policies"]["new"]
    assert base["prompts"] == 3
    assert base["prompt_strict"]["mean"] == pytest.approx(1 / 3)  # only prompt 1
    assert base["constraint_strict"]["mean"] == pytest.approx(2 / 4)  # SHORT of prompt 0, CHINESE
    assert new["prompt_strict"]["mean"] == pytest.approx(2 / 3)
    assert new["constraint_strict"]["mean"] == pytest.approx(3 / 4)
    assert new["by_type"]["word_count"]["strict"]["mean"] == 1.0 and new["by_type"]["word_count"]["instances"] == 2
    assert base["by_type"]["lowercase"]["strict"]["mean"] == 0.0
    assert new["subsets"]["lang:zh"]["prompt_strict"]["mean"] == 0.0
    assert base["subsets"]["lang:zh"]["prompt_strict"]["mean"] == 1.0
    assert new["subsets"]["heldout_types"]["prompt_strict"]["mean"] == 1.0
    assert new["subsets"]["seen_types"]["prompts"] == 2
    delta = report["comparisons"]["new"]["all"]
    assert delta["prompt_strict"]["mean"] == pytest.approx(1 / 3)  # (+1 − 1 + 1) / 3 prompts
    # constraint level, prompts weighted by constraints: (2·(1 − ½)·2 + 1·(0 − 1)·2 + 1·(1 − 0)·2) / (4 + 2 + 2)
    assert delta["constraint_strict"]["mean"] == pytest.approx((2 * 0.5 * 2 - 1 * 2 + 1 * 2) / 8)
    assert report["comparisons"]["new"]["heldout_types"]["prompt_strict"]["mean"] == 1.0


def test_loose_reads_past_a_first_line_and_markdown():
    replies = judged({"base": ["Sure! Here:\nyes it is", "是的。", "**one two**", "x"]})
    r0, r2 = replies[0], replies[2]
    assert r0.followed == {"strict": [False, False], "loose": [True, True]}
    assert r2.followed["strict"] == [True] and r2.scores["if_loose"] == 1.0
    report = instructions.summarize(replies, PROMPTS, ["base"], "base", 0, 200)
    assert report["policies"]["base"]["prompt_loose"]["mean"] == 1.0


def test_ratio_interval_covers_the_pooled_share_and_resamples_prompts_whole():
    ci = instructions.ratio_ci([1, 0, 3], [1, 1, 4], ["a", "b", "c"], seed=0, resamples=500)
    assert ci["mean"] == pytest.approx(4 / 6) and ci["low"] <= ci["mean"] <= ci["high"] and ci["n"] == 3
    assert instructions.ratio_ci([1], [2], ["a"])["low"] == 0.5


def test_no_constraints_no_block():
    replies = [reply("base", 3, "x")]
    assert instructions.summarize(replies, PROMPTS, ["base"], "base", 0, 100) is None


@pytest.mark.slow
def test_the_stage_reports_pass_rates_in_every_output(tiny_model_dir, other_tiny_model_dir, tmp_path):
    from evaluation.__main__ import main

    rows = [{"prompt": f"Tell me about topic {i}.", "domain": "general", "lang": "en", "heldout_types": i % 2 == 0,
             "constraints": [{"type": "word_count", "relation": "at_most", "n": 400}, {"type": "lowercase"}]}
            for i in range(6)]
    data = tmp_path / "constraints.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    main(["--config", str(REPO / "configs/evaluation/tiny.yaml"), "--output_root", str(tmp_path),
          "--policies", f"[{{name: base, model: {tiny_model_dir}}}, {{name: other, model: {other_tiny_model_dir}}}]",
          "--prompts", f"[{{path: {data}}}]"])
    run = tmp_path / "tiny"
    report = json.loads((run / "eval.json").read_text())
    block = report["instructions"]
    assert set(block["policies"]) == {"base", "other"}
    assert block["policies"]["base"]["by_type"]["word_count"]["strict"]["mean"] == 1.0  # tiny replies are short
    assert {"lang:en", "heldout_types", "seen_types"} <= set(block["policies"]["other"]["subsets"])
    assert "prompt_strict" in block["comparisons"]["other"]["all"]
    html = (run / "report.html").read_text()
    assert "instruction following" in html and "word_count" in html
    samples = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert all(len(s["followed"]["strict"]) == 2 for s in samples)
    metrics = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert "eval/other/if/delta/prompt_strict" in metrics
