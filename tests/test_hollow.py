"""Signs of a hollow policy (evaluation/hollow.py) on hand-made policies, against values worked out
by hand, and the warning they raise through the evaluation stage's summary, table, page and figures."""

from __future__ import annotations

import math

import pytest

from common.data.prompts import Prompt
from evaluation.config import EvalConfig, Judges, PolicySpec
from evaluation.hollow import (
    content_units,
    distinct_n,
    duplicated,
    hollow_figures,
    normalise,
    prompt_overlap,
    self_bleu,
    tokens,
    warning,
    won,
)
from evaluation.judges import summarize
from evaluation.policies import Reply
from evaluation.report import flat_figures, plot, table, write_html

PROMPTS = ["How do I boil an egg?", "What is the capital of France?", "Explain photosynthesis briefly.", "北京的天气怎么样？"]
IDS = [0, 1, 2, 3]
# the same line to every prompt, in four spellings that differ only in case, width and punctuation
DEFLECT = ["What a wonderful question!", "What a wonderful question!", "what a WONDERFUL question",
           "What a wonderful question！"]
COPY = list(PROMPTS)
HEALTHY = ["Boil the egg in water for nine minutes.", "Paris is the capital of France.",
           "Photosynthesis is how plants turn light into sugar.", "北京今天天气晴朗。"]


def test_normalising_folds_case_width_punctuation_and_spaces():
    assert normalise("What a  wonderful question！") == normalise("what a wonderful QUESTION.") == "what a wonderful question"
    assert normalise("ＡＢＣ，你好。") == "abc 你好"
    assert tokens("ＡＢＣ 你好") == ["abc", "你", "好"]


def test_duplicates_are_the_same_text_for_different_prompts():
    assert duplicated(DEFLECT, IDS) == [True, True, False, False]  # exactly: only the first two coincide
    assert duplicated([normalise(t) for t in DEFLECT], IDS) == [True] * 4
    assert duplicated(["x", "x", "y"], [0, 0, 1]) == [False] * 3  # two samples for one prompt are not a template
    assert duplicated(["", "", "y"], [0, 1, 2]) == [True, True, False]  # empty replies are duplicates too
    assert duplicated(COPY, IDS) == duplicated(HEALTHY, IDS) == [False] * 4


def test_distinct_n_pools_every_reply():
    # deflecting: "what a wonderful question" four times: 4 of 16 words and 3 of 12 bigrams distinct
    deflect = [tokens(t) for t in DEFLECT]
    assert distinct_n(deflect, 1) == 4 / 16 and distinct_n(deflect, 2) == 3 / 12
    # healthy: 8 + 6 + 8 + 8 words (北京今天天气晴朗 is 8 characters); "the", "is" and 天 each come twice → 27/30;
    # its 26 bigrams are all different
    healthy = [tokens(t) for t in HEALTHY]
    assert distinct_n(healthy, 1) == 27 / 30 and distinct_n(healthy, 2) == 1.0
    assert math.isnan(distinct_n([[], []], 2))


def test_self_bleu_by_hand():
    # "the cat sat" against "the cat ran": precisions 2/3, 1/2, and 0/1 trigrams smoothed to 1/2; no 4-grams
    # (effective order 3); equal lengths: BLEU = (2/3 · 1/2 · 1/2)^(1/3). The second sample for prompt 0 is
    # not a reference for the first — same prompt — or the first would score 1
    expected = (1 / 6) ** (1 / 3)
    out = self_bleu([["the", "cat", "sat"], ["the", "cat", "sat"], ["the", "cat", "ran"]], [0, 0, 1])
    assert out == pytest.approx([expected] * 3, abs=1e-9)
    # brevity: "the cat" against "the cat sat": precisions 1, 1, BP = exp(1 − 3/2)
    assert self_bleu([["the", "cat"], ["the", "cat", "sat"]], [0, 1])[0] == pytest.approx(math.exp(-0.5), abs=1e-9)
    # Chinese, a character a token: 我爱北京 against 我爱上海: 2/4, 1/3, then 0/2 and 0/1 smoothed to 1/4 and 1/4
    zh = self_bleu([tokens("我爱北京"), tokens("我爱上海")], [0, 1])
    assert zh[0] == pytest.approx((0.5 * (1 / 3) * 0.25 * 0.25) ** 0.25, abs=1e-9)
    # an empty reply has no n-grams; one prompt alone has no references
    assert math.isnan(self_bleu([[], ["a"]], [0, 1])[0]) and math.isnan(self_bleu([["a"]], [0])[0])
    assert self_bleu([tokens(t) for t in DEFLECT], IDS) == pytest.approx([1.0] * 4)


def test_self_bleu_equals_sacrebleu_sentence_score():
    from sacrebleu.metrics import BLEU

    texts = ["the cat sat on the mat", "a dog sat on a log today", "the cat ran", "北京 的 天气 很 好", "天气 很 好",
             "on the mat the cat sat", ""]
    prompts = [0, 0, 1, 2, 3, 4, 5]
    toks = [tokens(t) for t in texts]
    bleu = BLEU(tokenize="none", effective_order=True)
    for i, score in enumerate(self_bleu(toks, prompts)):
        refs = [" ".join(toks[j]) for j in range(len(texts)) if prompts[j] != prompts[i] and toks[j]]
        if not toks[i]:
            assert math.isnan(score)
            continue
        assert score == pytest.approx(bleu.sentence_score(" ".join(toks[i]), refs).score / 100, abs=1e-12)


def test_content_units_and_prompt_overlap():
    assert content_units("How do I boil an egg?") == {"boil", "egg"}
    assert content_units("Boil the egg in water for nine minutes.") == {"boil", "egg", "water", "nine", "minute"}
    # Chinese: runs cut at function characters (的, 怎, 么), then bigrams; a lone character stands for itself
    assert content_units("北京的天气怎么样？") == {"北京", "天气", "样"}
    assert content_units("北京今天天气晴朗。") == {"北京", "京今", "今天", "天天", "天气", "气晴", "晴朗"}
    assert prompt_overlap(PROMPTS[3], HEALTHY[3]) == 2 / 3
    assert prompt_overlap(PROMPTS[2], HEALTHY[2]) == 1 / 2  # photosynthesis, not "briefly"
    assert prompt_overlap(PROMPTS[0], DEFLECT[0]) == 0.0 and prompt_overlap(PROMPTS[0], PROMPTS[0]) == 1.0
    assert math.isnan(prompt_overlap("What is it?", "It is."))  # nothing but function words to share


def test_distinct_n_interval_surrounds_the_figure_of_many_varied_replies():
    """60 replies to 60 prompts, few words shared: a resample with replacement would repeat replies
    and put the whole interval below the pooled figure (it did, on 199 held-out prompts)."""
    words_ = [f"word{i}" for i in range(400)]
    texts = [" ".join(words_[(7 * p + k) % 400] for k in range(6)) for p in range(60)]
    f = hollow_figures([f"question {p}" for p in range(60)], texts, list(range(60)), resamples=200)
    for key in ("distinct_1", "distinct_2"):
        assert f[key]["low"] < f[key]["mean"] < f[key]["high"], (key, f[key])


@pytest.mark.parametrize("policy, dup_exact, dup_norm, d1, d2, sbleu, overlap, zero", [
    (DEFLECT, 0.5, 1.0, 0.25, 0.25, 1.0, 0.0, 1.0),
    (COPY, 0.0, 0.0, 1.0, 1.0, None, 1.0, 0.0),
    (HEALTHY, 0.0, 0.0, 0.9, 1.0, None, (1 + 1 + 1 / 2 + 2 / 3) / 4, 0.0),
])
def test_figures_of_three_hand_made_policies(policy, dup_exact, dup_norm, d1, d2, sbleu, overlap, zero):
    f = hollow_figures(PROMPTS, policy, IDS, scores=[1.0, 2.0, 3.0, 4.0], lengths=[4.0, 3.0, 2.0, 1.0], resamples=200)
    assert f["replies"] == 4
    assert f["duplicate_share"]["mean"] == dup_exact and f["duplicate_share_normalised"]["mean"] == dup_norm
    assert f["distinct_1"]["mean"] == pytest.approx(d1) and f["distinct_2"]["mean"] == pytest.approx(d2)
    for key in ("distinct_1", "distinct_2"):  # a jackknife over the prompts, around the pooled figure
        assert f[key]["low"] <= f[key]["mean"] + 1e-9 and f[key]["mean"] <= f[key]["high"] + 1e-9 and f[key]["n"] == 4
    assert f["prompt_overlap"]["mean"] == pytest.approx(overlap) and f["zero_overlap_share"]["mean"] == zero
    assert f["rm_length_spearman"]["mean"] == pytest.approx(-1.0)
    if sbleu is not None:
        assert f["self_bleu"]["mean"] == pytest.approx(sbleu)
    else:  # replies to different questions share little: well below a template's 1
        assert f["self_bleu"]["mean"] < 0.3
    assert 0 <= f["zero_overlap_share"]["low"] <= f["zero_overlap_share"]["high"] <= 1
    if policy is DEFLECT:
        assert f["most_repeated"] == {"text": "what a wonderful question", "prompts": 4}
    else:
        assert "most_repeated" not in f


def test_the_deflecting_policy_is_warned_about_and_the_healthy_one_is_not():
    deflect, healthy, copy = (hollow_figures(PROMPTS, p, IDS, resamples=200) for p in (DEFLECT, HEALTHY, COPY))
    line = warning("ppo", deflect, "sft", healthy, win=True)
    assert line.startswith("warning: ppo's win comes with 100% duplicated replies (sft: 0%; most often \"what a "
                           "wonderful question\", to 4 prompts)")
    assert "100% replies sharing no content word with their prompt (sft: 0%)" in line
    assert "distinct-2 0.25 (sft: 1.00)" in line and "self-BLEU 1.00 (sft: " in line
    assert line.endswith("read the replies before trusting the win-rate")
    assert warning("dpo", healthy, "sft", healthy, win=True) is None
    assert warning("echo", copy, "sft", healthy, win=True) is None  # copying is not what these signs detect
    assert warning("ppo", deflect, "sft", healthy, win=False) is None  # no win, nothing to distrust


def test_several_signs_moving_together_warn_though_each_stays_under_its_margin():
    # the GRPO-on-constraints policy against the start model (held-out set, greedy): no sign past its
    # margin, three past half of theirs — and read blind, its replies were hollower
    base = {"duplicate_share_normalised": 0.10, "zero_overlap_share": 0.16, "distinct_2": 0.48, "self_bleu": 0.42}
    grpo = {"duplicate_share_normalised": 0.09, "zero_overlap_share": 0.30, "distinct_2": 0.35, "self_bleu": 0.51}
    line = warning("grpo", grpo, "default", base, win=True)
    assert line == ("warning: grpo's win comes with 30% replies sharing no content word with their prompt (default: "
                    "16%), distinct-2 0.35 (default: 0.48), self-BLEU 0.51 (default: 0.42) — read the replies before "
                    "trusting the win-rate")
    one = {**base, "zero_overlap_share": 0.30}  # one sign under its margin: not enough
    assert warning("grpo", one, "default", base, win=True) is None
    past = {**grpo, "zero_overlap_share": 0.40}  # one past its margin: it alone is named
    assert warning("grpo", past, "default", base, win=True).count("(default:") == 1


def test_a_win_is_an_interval_above_one_half():
    assert won({"win_rate": {"mean": 0.7, "low": 0.55, "high": 0.8}})
    assert not won({"win_rate": {"mean": 0.6, "low": 0.45, "high": 0.75}})
    assert won({"mixed_win_rate": {"mean": 0.7, "low": 0.6, "high": 0.8}})  # no reward-model judge
    assert not won({})


def test_the_stage_reports_the_deflecting_policy(tmp_path):
    # 12 prompts; sft answers each, ppo says the same line to all and wins every pair by the reward model,
    # while being shorter on every pair (so its length-controlled win-rate is withheld)
    questions = [f"Tell me about topic{i} and subject{i}." for i in range(12)]
    prompts = [Prompt([{"role": "user", "content": q}], "general", None, f"p:{i}") for i, q in enumerate(questions)]
    replies = []
    for i in range(12):
        replies.append(Reply("sft", i, 0, f"Topic{i} is a subject{i} matter with details number {i}.", list(range(12)),
                             True, scores={"rm": -1.0 + 0.01 * i}))
        replies.append(Reply("ppo", i, 0, "What a wonderful question!" if i % 2 else "what a wonderful question",
                             list(range(5)), True, scores={"rm": 1.0 - 0.01 * i}))
    cfg = EvalConfig(policies=[PolicySpec("sft", "x"), PolicySpec("ppo", "y")], baseline="sft", reward_model="rm",
                     judges=Judges(mixed_reward=False, kl=False), bootstrap_resamples=200)
    report = {"run_name": "t", **summarize(replies, prompts, cfg, has_kl=False)}
    ppo, sft = report["policies"]["ppo"]["hollow"], report["policies"]["sft"]["hollow"]
    assert ppo["duplicate_share_normalised"]["mean"] == 1.0 and sft["duplicate_share_normalised"]["mean"] == 0.0
    assert ppo["duplicate_share"]["mean"] == 1.0  # each exact spelling answers six prompts
    assert ppo["zero_overlap_share"]["mean"] == 1.0 and sft["zero_overlap_share"]["mean"] == 0.0
    assert math.isnan(ppo["rm_length_spearman"]["mean"])  # every length equal: ρ undefined
    assert len(report["warnings"]) == 1 and report["warnings"][0].startswith("warning: ppo's win comes with 100%")
    lc = report["comparisons"]["ppo"]["lc_win_rate"]
    assert lc["mean"] is None and "shorter in 100%" in lc["withheld"]
    text = table(report)
    assert report["warnings"][0] in text and "ppo's length-controlled win-rate is withheld: the policy's reply" in text
    assert "signs of a hollow policy" in text and "duplicated" in text
    page = write_html(tmp_path, report, replies, prompts, None).read_text()
    assert page.index("class='warning'") < page.index("<pre>")  # the warning comes before the table
    flat = flat_figures(report)
    assert flat["eval/ppo/hollow/duplicate_share_normalised"] == 1.0 and flat["eval/ppo/hollow/warning"] == 1.0
    assert flat["eval/sft/hollow/warning"] == 0.0 and flat["eval/ppo/lc_win_rate/withheld"] == 1.0
    assert "eval/ppo/lc_win_rate" not in flat and flat["eval/ppo/win_rate"] == 1.0
    assert plot(tmp_path, report).is_file()


def test_a_win_by_the_rules_alone_is_distrusted_when_it_comes_with_hollow_replies():
    """No reward-model judge: a policy that follows more rules (here: no commas) by replying "SmolLM"
    to every prompt wins on pass rates — and gets the warning the reward-model win would get."""
    from evaluation import instructions

    questions = [f"Tell me about topic{i}, subject{i} and matter{i}." for i in range(12)]
    prompts = [Prompt([{"role": "user", "content": q}], "general", None, f"p:{i}", constraints=[{"type": "no_commas"}])
               for i, q in enumerate(questions)]
    replies = []
    for i in range(12):
        replies.append(Reply("sft", i, 0, f"Topic{i}, subject{i} and matter{i} are, in short, things.", list(range(12)),
                             True))
        replies.append(Reply("grpo", i, 0, "SmolLM", list(range(2)), True))
    instructions.judge(replies, prompts)
    cfg = EvalConfig(policies=[PolicySpec("sft", "x"), PolicySpec("grpo", "y")], baseline="sft", reward_model=None,
                     judges=Judges(reward_model=False, mixed_reward=False, kl=False), bootstrap_resamples=200)
    report = summarize(replies, prompts, cfg, has_kl=False)
    assert report["instructions"]["comparisons"]["grpo"]["all"]["prompt_strict"]["low"] > 0  # a win by the rules
    assert len(report["warnings"]) == 1 and report["warnings"][0].startswith("warning: grpo's win comes with 100% dupl")
    assert "sharing no content word with their prompt" in report["warnings"][0]
