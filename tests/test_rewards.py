"""Reward components and the per-domain mixer, against values worked out by hand."""

from decimal import Decimal

import pytest
import torch

from common.config import ConfigError
from common.data.text import words
from common.rewards.accuracy import exact_match, final_number, final_number_of, lcs_length, rouge_l, token_f1
from common.rewards.diversity import distinct_n, diversity_scores, non_repetition
from common.rewards.efficiency import length_score
from common.rewards.mixer import DomainConfig, RewardMixer, RewardWeights, RunningNorm, Sample, load_domains


def test_reference_metrics():
    assert exact_match("The answer is 42.", "the answer is 42") == 1.0
    assert exact_match("42", "41") == 0.0
    # pred [the, cat, sat], ref [the, cat, sat, down]: P = 1, R = 3/4 → F1 = 6/7
    assert token_f1("the cat sat", "the cat sat down") == pytest.approx(6 / 7)
    assert token_f1("dog", "cat") == 0.0
    assert lcs_length(list("abcbdab"), list("bdcaba")) == 4
    # pred [a, b, c, d], ref [a, c, b, d]: LCS 3 → P = R = 3/4
    assert rouge_l("a b c d", "a c b d") == pytest.approx(0.75)


def test_final_number_reads_the_answer_a_reply_commits_to():
    # GSM8K's rule: the number after the last '####'; without one, the last number in the text
    assert final_number("3 + 4 = 7, so #### 7", "7") == 1.0
    assert final_number("#### 18 dollars, not the 20 she hoped", "#### 18") == 1.0  # the first number after ####
    assert final_number("She had 3 apples and bought 4: 7 apples.", "7") == 1.0  # the last number
    assert final_number("She had 3 apples and bought 4: 7 apples. Or 8?", "7") == 0.0
    assert final_number("He pays $1,000.00 in total.", "1000") == 1.0  # separators, currency, trailing zeros
    assert final_number("It is -5 degrees", "5") == 0.0  # the sign counts
    assert final_number("答案是 42 元", "42") == 1.0
    assert final_number("no number here", "3") == 0.0
    assert final_number("3", "no number in the reference") == 0.0
    assert final_number_of("1,234.50 and #### ") == Decimal("1234.5")  # nothing after '####': the last number
    assert str(final_number_of("x = 12.5")) == "12.5"


def test_chinese_is_scored_character_by_character():
    # pred 每天两次 (4 chars), ref 每天三次 (4 chars): 3 shared → F1 = 3/4
    assert token_f1("每天两次", "每天三次") == pytest.approx(0.75)
    assert rouge_l("每天两次", "每天三次") == pytest.approx(0.75)


def test_mixed_chinese_and_latin_text_splits_at_every_cjk_character():
    assert words("2023年3月发布了GPT模型") == ["2023", "年", "3", "月", "发", "布", "了", "gpt", "模", "型"]
    assert words("答案是42元，约合6美元") == ["答", "案", "是", "42", "元", "约", "合", "6", "美", "元"]
    assert token_f1("2023年", "2023 年") == 1.0
    # pred 答 案 是 42 元, ref 42 元: P = 2/5, R = 1 → F1 = 2·0.4/1.4
    assert token_f1("答案是 42 元", "42元") == pytest.approx(0.8 / 1.4)
    assert exact_match("42元", "42 元") == 1.0 and words("café naïve") == ["café", "naïve"]


def test_diversity_components():
    # bigrams: (a b) (b c) | (a b) (b d): 3 distinct of 4
    assert distinct_n(["a b c", "a b d"], 2) == pytest.approx(0.75)
    # trigrams of "x y z x y z": (x y z) (y z x) (z x y) (x y z): 3 distinct of 4
    assert non_repetition("x y z x y z") == pytest.approx(0.75)
    scores = diversity_scores(["a b c", "a b d", "p q r s"], [0, 0, 1])
    assert scores[0] == pytest.approx(0.5 * 0.75 + 0.5 * 1.0)
    assert scores[2] == pytest.approx(1.0)  # alone for its prompt: within-response score twice


def test_length_score():
    assert [length_score(n, 100) for n in (10, 100, 150, 200, 500)] == [1.0, 1.0, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError):
        length_score(5, 0)


def test_running_norm_matches_the_statistics_of_everything_seen():
    norm = RunningNorm()
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0])
    norm.update(a)
    norm.update(b)
    both = torch.cat([a, b]).double()
    assert norm.mean == pytest.approx(both.mean().item())
    assert norm.std == pytest.approx(both.std(unbiased=False).item())
    constant = RunningNorm()
    constant.update(torch.ones(4))
    assert constant.normalize(torch.ones(4)).tolist() == [0.0] * 4


def test_shipped_domains_parse_with_the_design_defaults():
    domains = load_domains()
    assert {"general", "medical", "finance", "legal", "code", "math"} <= set(domains)
    assert domains["math"].accuracy_metric == "final_number"
    w = domains["general"].weights
    assert (w.accuracy, w.diversity, w.efficiency) == (0.6, 0.3, 0.1)


def test_bad_domain_file_names_the_key(tmp_path):
    (tmp_path / "x.yaml").write_text("name: x\nweights: {accuracy: 1, speed: 2}\n")
    with pytest.raises(ConfigError, match=r"x\.yaml: unknown key 'weights\.speed'"):
        load_domains(tmp_path)


def test_weights_decide_which_component_drives_the_mixed_reward(tmp_path):
    (tmp_path / "acc.yaml").write_text("name: acc\nweights: {accuracy: 1, diversity: 0, efficiency: 0}\ntoken_budget: 10\n")
    (tmp_path / "eff.yaml").write_text("name: eff\nweights: {accuracy: 0, diversity: 0, efficiency: 1}\ntoken_budget: 10\n")
    domains = load_domains(tmp_path)

    def batch(domain):
        # sample 0: right but long; sample 1: wrong but short
        return [Sample("the answer is four", domain, 0, 30, reference="the answer is four"),
                Sample("five", domain, 1, 5, reference="the answer is four")]

    acc, _ = RewardMixer(domains)(batch("acc"))
    eff, raw = RewardMixer(domains)(batch("eff"))
    assert acc[0] > acc[1] and eff[1] > eff[0]
    assert raw["efficiency"].tolist() == [0.0, 1.0]
    mixed, _ = RewardMixer(domains)(batch("acc") + batch("eff"))  # one batch, two domains
    assert mixed[0] > mixed[1] and mixed[3] > mixed[2]


def test_reward_model_score_is_the_accuracy_without_a_reference():
    mixer = RewardMixer(load_domains())
    _, raw = mixer([Sample("a", "general", 0, 3, rm_score=1.5), Sample("b", "general", 1, 3, rm_score=-0.5)])
    assert raw["accuracy"].tolist() == [1.5, -0.5]
    mixed, raw = mixer([Sample("a b", "general", 0, 3), Sample("a b", "general", 1, 3)])  # no judge: rule-only
    assert torch.isnan(raw["accuracy"]).all() and torch.isfinite(mixed).all()
    with pytest.raises(KeyError, match="unknown domain 'space'"):
        mixer([Sample("a", "space", 0, 3, rm_score=1.0)])


def test_mixer_state_round_trips():
    mixer = RewardMixer(load_domains())
    mixer([Sample("a b c", "general", 0, 3, rm_score=1.0), Sample("d e", "medical", 1, 9, rm_score=0.0)])
    other = RewardMixer(load_domains())
    other.load_state_dict(mixer.state_dict())
    assert other.state_dict() == mixer.state_dict()


def test_reward_norm_running_or_saved_reward_model_statistics():
    domains = {"general": DomainConfig(name="general", weights=RewardWeights(accuracy=1.0, diversity=0.0, efficiency=0.0))}
    samples = [Sample(response=f"answer {i}", domain="general", group=i, n_tokens=3, rm_score=s)
               for i, s in enumerate([0.5, 1.5, 2.5])]
    # running: the scores' own mean (1.5) and std (√(2/3)) bring them to z-scores
    running, _ = RewardMixer(domains)(samples)
    assert running.tolist() == pytest.approx([-1.2247, 0.0, 1.2247], abs=1e-4)
    # saved statistics: the scorer already z-scored them with the reward model's mean/std: kept as they are
    saved, _ = RewardMixer(domains, rm_saved_stats=True)(samples)
    assert saved.tolist() == pytest.approx([0.5, 1.5, 2.5])
    # a reference answer still goes through the running statistics in that mode
    mixed = samples + [Sample(response="x", domain="general", group=9, n_tokens=1, reference="x"),
                       Sample(response="y", domain="general", group=10, n_tokens=1, reference="x")]
    out, _ = RewardMixer(domains, rm_saved_stats=True)(mixed)
    assert out.tolist() == pytest.approx([0.5, 1.5, 2.5, 1.0, -1.0])


def test_reward_model_scores_and_reference_metrics_keep_separate_statistics():
    domains = {"general": DomainConfig(name="general", weights=RewardWeights(accuracy=1.0, diversity=0.0, efficiency=0.0))}
    rm = [Sample(response=f"a{i}", domain="general", group=i, n_tokens=3, rm_score=s) for i, s in enumerate([0.5, 1.5, 2.5])]
    ref = [Sample(response=r, domain="general", group=9 + i, n_tokens=1, reference="x") for i, r in enumerate(["x", "y"])]
    # running: RM scores z-scored among themselves (mean 1.5, std √(2/3)), F1 1 and 0 among themselves
    out, _ = RewardMixer(domains)(rm + ref)
    assert out.tolist() == pytest.approx([-1.2247, 0.0, 1.2247, 1.0, -1.0], abs=1e-4)
    # so an RM score's normalised value does not depend on how many reference rows share its batch
    alone, _ = RewardMixer(domains)(rm)
    assert out[:3].tolist() == pytest.approx(alone.tolist(), abs=1e-6)
