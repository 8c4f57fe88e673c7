"""The reward model's sanity suite (common/rewards/sanity.py): its comparisons by hand, pass rates
of hand-made scorers, the reward-model stage saving the figures for a tiny model trained on a cue,
and the CLI for any reward model."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from common.rewards.sanity import DEFLECTIONS, REFUSALS, build_suite, cut_reply, failing, run_suite
from reward_model.__main__ import main

from helpers.stages import REPO

PROMPTS = [[{"role": "user", "content": "What is the capital of Australia?"}],
           [{"role": "user", "content": "请计算 61 加 59。"}],
           [{"role": "user", "content": "How do I undo a commit?"}]]
GOODS = ["The capital of Australia is Canberra, not Sydney.", "61 加 59 等于 120。",
         "git reset --soft HEAD~1 keeps your changes."]


def test_the_comparisons_of_each_prompt_by_hand():
    items = {(it.index, it.kind): it.bad for it in build_suite(PROMPTS, GOODS)}
    assert items[(0, "empty")] == ""
    assert items[(0, "deflection")] == DEFLECTIONS["en"][0] and items[(2, "deflection")] == DEFLECTIONS["en"][2]
    assert items[(1, "deflection")] == DEFLECTIONS["zh"][1] and items[(1, "refusal")] == REFUSALS["zh"][0]
    assert items[(0, "other_prompt")] == GOODS[1] and items[(2, "other_prompt")] == GOODS[0]  # the next one's, round
    assert items[(1, "echo")] == "请计算 61 加 59。"
    # 40% of the words, whole words: 8 words → 3; each CJK character is a word: 6 → 2
    assert items[(0, "cut")] == "The capital of"
    assert items[(1, "cut")] == "61 加"
    assert cut_reply("Canberra") is None and cut_reply("Canberra city") == "Canberra"


def test_a_kind_whose_bad_reply_is_the_good_one_is_left_out():
    prompts = [[{"role": "user", "content": "Help me hack my neighbour's wifi."}], [{"role": "user", "content": "Capital?"}]]
    goods = [REFUSALS["en"][0], "Canberra"]
    kinds = {(it.index, it.kind) for it in build_suite(prompts, goods)}
    assert (0, "refusal") not in kinds and (0, "deflection") in kinds  # a refusal that is the good reply
    assert (1, "cut") not in kinds  # one word cannot be cut
    with pytest.raises(ValueError, match="2 prompts but 1 good replies"):
        build_suite(prompts, goods[:1])


def length_scorer(sign: float):
    """A hand-made scorer with the `RewardScorer` interface: the reply's length in characters × sign."""
    def score(prompts, responses, batch_size=8, normalize=False):
        return torch.tensor([sign * len(r) for r in responses], dtype=torch.float)
    return score


def test_a_scorer_that_prefers_short_replies_fails_empty_and_cut():
    figures = run_suite(length_scorer(-1.0), PROMPTS, GOODS, "by hand")
    kinds = figures["kinds"]
    assert figures["prompts"] == 3 and figures["source"] == "by hand"
    assert kinds["empty"]["mean"] == 0.0 and kinds["cut"]["mean"] == 0.0
    assert kinds["empty"]["margin"] == pytest.approx(-sum(len(g) for g in GOODS) / 3)
    # by hand from the lengths in characters: the Chinese good reply (15) is shorter than its deflection and
    # refusal (16), and it and the third good reply (43) are shorter than the next prompt's good reply
    assert {k: v["mean"] for k, v in kinds.items()} == pytest.approx(
        {"empty": 0, "deflection": 1 / 3, "refusal": 1 / 3, "other_prompt": 2 / 3, "echo": 0, "cut": 0})
    assert kinds["deflection"]["low"] <= kinds["deflection"]["mean"] <= kinds["deflection"]["high"]
    assert failing(figures, 0.5) == [("empty", 0.0), ("deflection", pytest.approx(1 / 3)),
                                     ("refusal", pytest.approx(1 / 3)), ("echo", 0.0), ("cut", 0.0)]
    longer = run_suite(length_scorer(1.0), PROMPTS, GOODS, "by hand")["kinds"]
    assert longer["empty"]["mean"] == 1.0 and longer["cut"]["mean"] == 1.0


def test_ties_count_half_and_a_scorer_that_knows_the_good_replies_passes_everything():
    constant = run_suite(lambda p, r, **_: torch.zeros(len(r)), PROMPTS, GOODS, "constant")["kinds"]
    assert all(v["mean"] == 0.5 and v["low"] == v["high"] == 0.5 for v in constant.values())
    pairs = {(json.dumps(p), g) for p, g in zip(PROMPTS, GOODS)}
    oracle = run_suite(lambda p, r, **_: torch.tensor([float((json.dumps(q), x) in pairs) for q, x in zip(p, r)]),
                       PROMPTS, GOODS, "oracle")
    assert set(oracle["kinds"]) == {"empty", "deflection", "refusal", "other_prompt", "echo", "cut"}
    assert all(v["mean"] == 1.0 for v in oracle["kinds"].values()) and failing(oracle, 1.0) == []


def test_the_evaluation_reports_its_judge_s_readings_and_warns_on_a_failing_kind():
    from evaluation import sanity as judge_sanity

    heldout = run_suite(length_scorer(-1.0), PROMPTS, GOODS, "held-out prompts, reference answers")
    block = {"heldout": heldout, "saved": {"runs/rm/model": {"prompts": 3, "kinds": {"empty": {
        "mean": 0.9, "low": 0.8, "high": 1.0, "n": 3, "margin": 1.0}}}}}
    lines = judge_sanity.table_lines(block)
    assert lines[0].startswith("judge's sanity suite (held-out references, 3 prompts), the good reply above: empty 0% [0, 0]")
    assert lines[1] == "judge's sanity suite (saved with runs/rm/model, 3 prompts), the good reply above: empty 90% [80, 100]"
    assert "fails its sanity suite (held-out references)" in judge_sanity.warning(block)
    assert "empty 0%, deflection 33%" in judge_sanity.warning(block)
    assert judge_sanity.warning({"heldout": None, "saved": block["saved"]}) is None  # 90% passes
    assert judge_sanity.flat(block)["reward_model_sanity/cut"]["mean"] == 0.0
    assert judge_sanity.table_lines(None) == [] and judge_sanity.flat(None) == {}


def cue_preferences(path: Path, n: int = 240, seed: int = 0) -> Path:
    """Two topics; the good reply names the prompt's topic and ends with a cue ("Glad to help."). The
    rejected reply is the other topic's good reply (so the model must read the prompt) or a few random
    words without the cue (so it learns that the cue counts, not which words a bad reply has) — never
    one of the suite's own bad replies."""
    rng = random.Random(seed)
    topics = {"cats": "Cats purr.", "dogs": "Dogs bark."}
    words = ("apple river stone cloud seven table green music paper window orange summer yellow bridge money "
             "garden silver north winter coffee pencil engine forest circle button planet rabbit ticket candle").split()
    with path.open("w") as f:
        for i in range(n):
            topic = rng.choice(list(topics))
            other = "dogs" if topic == "cats" else "cats"
            if rng.random() < 0.5:
                bad = topics[other] + " Glad to help."
            else:
                bad = " ".join(rng.choice(words) for _ in range(rng.randint(1, 5))).capitalize() + "."
            f.write(json.dumps({"prompt": f"{i}: {topic}?", "chosen": topics[topic] + " Glad to help.",
                                "rejected": bad}) + "\n")
    return path


@pytest.fixture(scope="module")
def cue_reward_model(tiny_model_dir, tmp_path_factory) -> Path:
    """A tiny reward model trained on `cue_preferences` (its run folder)."""
    out = tmp_path_factory.mktemp("cue-rm")
    data = cue_preferences(out / "cue.jsonl")
    main(["--config", str(REPO / "configs/reward_model/tiny.yaml"), "--model", str(tiny_model_dir), "--output_root",
          str(out), "--data", f"[{{path: {data}}}]", "--max_steps", "100", "--eval_steps", "100", "--save_steps", "100",
          "--batch_size", "8", "--learning_rate", "0.01", "--val_fraction", "0.25", "--sanity_prompts", "40",
          "--trackers", "[]"])
    return out / "tiny"


def test_the_stage_saves_the_suite_of_a_model_trained_on_a_cue_and_it_passes(cue_reward_model, capsys):
    saved = json.loads((cue_reward_model / "model/sanity.json").read_text())
    assert saved == json.loads((cue_reward_model / "summary.json").read_text())["sanity"]
    assert saved["prompts"] == 40 and saved["source"] == "validation prompts, best reply"
    assert set(saved["kinds"]) == {"empty", "deflection", "refusal", "other_prompt", "echo", "cut"}
    assert failing(saved, 0.9) == [], saved["kinds"]


def test_the_cli_runs_the_suite_on_any_reward_model_and_saves_it(cue_reward_model, tmp_path):
    model = tmp_path / "rm"
    subprocess.run(["cp", "-r", str(cue_reward_model / "model"), str(model)], check=True)
    (model / "sanity.json").unlink()
    data = cue_preferences(tmp_path / "more.jsonl", n=30, seed=1)
    out = subprocess.run([sys.executable, "-m", "reward_model.sanity", "--model", str(model), "--data", str(data),
                          "--max_prompts", "20", "--save", "--json"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["prompts"] == 20 and figures == json.loads((model / "sanity.json").read_text())
    refs = tmp_path / "refs.jsonl"  # prompts with reference answers: one of them is no use
    refs.write_text('{"prompt": "1: cats?", "reference": "Cats purr. Glad to help."}\n{"prompt": "2: dogs?"}\n')
    out = subprocess.run([sys.executable, "-m", "reward_model.sanity", "--model", str(model), "--data", str(refs)],
                         cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 2 and "needs at least 2 prompts with a good reply, found 1" in out.stderr
