"""The instruction-following verifiers: every constraint type on hand-written replies that pass and that
fail (English, Chinese, mixed scripts, blank), strict and loose verdicts, row scores, bad constraints."""

import re

import pytest

from common.data import DataError
from common.rewards.verifiers import (
    TYPES,
    compatible,
    conflict,
    constraint_level_accuracy,
    constraint_results,
    follows,
    language_of,
    loose_variants,
    prompt_level_accuracy,
    score,
    validate,
    validate_constraints,
)


def C(kind, **args):
    return {"type": kind, **args}


# (constraint, reply, verdict): for each type replies that pass and that fail, Chinese where the type applies
CASES = [
    # word_count: each 汉字 is one word, a number one word, punctuation none
    (C("word_count", relation="at_most", n=5), "Tea is a calming drink.", True),
    (C("word_count", relation="at_most", n=4), "Tea is a calming drink.", False),
    (C("word_count", relation="exactly", n=5), "我喜欢喝茶。", True),  # 5 characters, 。 not counted
    (C("word_count", relation="at_least", n=5), "In 2023年 tea", False),  # in, 2023, 年, tea
    (C("word_count", relation="exactly", n=4), "In 2023年 tea", True),
    # sentence_count: . ! ? before a space or the end, 。！？ anywhere, line breaks; 3.14 and '1.' are not ends
    (C("sentence_count", relation="exactly", n=3), "Pi is 3.14. It never ends! Why?", True),
    (C("sentence_count", relation="exactly", n=3), "我很好。你呢？今天天气不错！", True),
    (C("sentence_count", relation="at_most", n=2), "我很好。你呢？今天天气不错！", False),
    (C("sentence_count", relation="exactly", n=2), "Steps:\n1. Boil water", True),  # 'Steps:' and 'Boil water'
    (C("sentence_count", relation="at_least", n=2), 'He said "stop." Then left.', True),
    # paragraph_count
    (C("paragraph_count", relation="exactly", n=2), "First part.\n\nSecond part.", True),
    (C("paragraph_count", relation="exactly", n=2), "第一段。\n  \n第二段。\n\n\n第三段。", False),
    (C("paragraph_count", relation="exactly", n=1), "One line.\nAnother line, same paragraph.", True),
    # chinese_char_count: Han characters only
    (C("chinese_char_count", relation="exactly", n=4), "Python 很好用！", False),  # 很好用 = 3
    (C("chinese_char_count", relation="exactly", n=3), "Python 很好用！", True),
    (C("chinese_char_count", relation="at_least", n=1), "All English here.", False),
    # char_count: non-whitespace characters
    (C("char_count", relation="at_most", n=6), "a b c\n你好。", True),  # a b c 你 好 。
    (C("char_count", relation="at_most", n=5), "a b c\n你好。", False),
    # response_language: by word units
    (C("response_language", language="zh"), "可以用 s[::-1] 反转字符串。", True),
    (C("response_language", language="en"), "可以用 s[::-1] 反转字符串。", False),
    (C("response_language", language="en"), "Say 你好 to your new friends today.", True),
    (C("response_language", language="zh"), "Say 你好 to your new friends today.", False),
    (C("response_language", language="en"), "42", False),  # no letters: no language
    # lowercase / uppercase: cased letters only, at least one
    (C("lowercase"), "all good here, 谢谢! 123", True),
    (C("lowercase"), "All good here", False),
    (C("lowercase"), "全部是中文。", False),  # no cased letter
    (C("uppercase"), "ALL GOOD, 谢谢!", True),
    (C("uppercase"), "ALL GOOd", False),
    (C("uppercase"), "１２３", False),
    # letter_frequency: either case
    (C("letter_frequency", letter="e", relation="at_least", n=3), "Eve sees", True),  # E e e e
    (C("letter_frequency", letter="z", relation="at_most", n=0), "Zero", False),
    (C("letter_frequency", letter="z", relation="at_most", n=0), "没有这个字母", True),
    # capital_word_frequency: two letters or more
    (C("capital_word_frequency", relation="exactly", n=2), "I think NASA and the USA agree.", True),
    (C("capital_word_frequency", relation="at_least", n=1), "I am A ok", False),
    # starts_with / ends_with: any case, whitespace runs equal, whole words
    (C("starts_with", phrase="Sure"), "  sure, here it is.", True),
    (C("starts_with", phrase="Sure"), "Surely not.", False),
    (C("starts_with", phrase="here is my  answer"), "Here is\nmy answer: yes", True),
    (C("starts_with", phrase="好的"), "好的，我来回答。", True),
    (C("starts_with", phrase="好的"), "嗯，好的。", False),
    (C("ends_with", phrase="Hope this helps."), "Drink water. Hope this helps.  \n", True),
    (C("ends_with", phrase="Hope this helps."), "Hope this helps. Bye.", False),
    (C("ends_with", phrase="谢谢。"), "多喝水。谢谢。", True),
    (C("ends_with", phrase="谢谢。"), "多喝水。谢谢！", False),
    # include / exclude / frequency: Latin by whole word and any case; Chinese anywhere
    (C("include_keywords", keywords=["tea", "茶"]), "TEA or 喝茶?", True),
    (C("include_keywords", keywords=["tea"]), "My teacher drinks coffee.", False),
    (C("include_keywords", keywords=["Python", "列表"]), "Python中的列表", True),
    (C("include_keywords", keywords=["index fund"]), "An index\nfund tracks a market.", True),
    (C("exclude_keywords", keywords=["very", "非常"]), "It is quite good, 很好.", True),
    (C("exclude_keywords", keywords=["very", "非常"]), "这个非常好", False),
    (C("exclude_keywords", keywords=["very"]), "Every day is VERY long.", False),
    (C("keyword_frequency", keyword="tea", relation="exactly", n=2), "Tea, tea, teacup and teas.", True),
    (C("keyword_frequency", keyword="茶", relation="at_least", n=3), "我喜欢喝茶，绿茶很好。", False),
    (C("keyword_frequency", keyword="茶", relation="at_most", n=0), "我喜欢咖啡。", True),
    # repeat_request: word for word, any case, whitespace runs equal
    (C("repeat_request", request="What is an index fund?"), "what is an  index fund? It is a fund that tracks an index.", True),
    (C("repeat_request", request="What is an index fund?"), "An index fund is a fund.", False),
    (C("repeat_request", request="什么是复利？"), "什么是复利？复利就是利滚利。", True),
    (C("repeat_request", request="什么是复利？"), "复利就是利滚利。什么是复利？", False),
    # end_with_question
    (C("end_with_question"), "Any questions?  ", True),
    (C("end_with_question"), "还有问题吗？", True),
    (C("end_with_question"), "Is it? No.", False),
    # no_commas / no_digits
    (C("no_commas"), "No commas here. 这里也没有。", True),
    (C("no_commas"), "苹果、香蕉", False),
    (C("no_commas"), "你好，世界", False),
    (C("no_commas"), "a, b", False),
    (C("no_digits"), "Twelve apples and 十二个梨。", True),
    (C("no_digits"), "１２ apples", False),
    (C("no_digits"), "12 apples", False),
    # bullet_count: '* ' or '- ' first on a line; '**bold**' and '---' are not bullets
    (C("bullet_count", n=3), "Tips:\n* Sleep\n- Eat well\n  * Walk\n**Note** done\n---", True),
    (C("bullet_count", n=2), "* 多喝水\n* 多休息\n* 看医生", False),
    (C("bullet_count", n=2), "*not a bullet*\n-nor this", False),
    # numbered_list: 1. 1) 1、 １．; 1.5 is not an item
    (C("numbered_list", relation="exactly", n=4), "1. a\n2) b\n3、c\n４．d\n1.5 kg of flour", True),
    (C("numbered_list", relation="at_least", n=3), "1. 多喝水\n2. 多休息", False),
    # quoted
    (C("quoted"), '  "Drink water and rest."\n', True),
    (C("quoted"), "“多喝水，多休息。”", True),
    (C("quoted"), '"Drink water." Then rest.', False),
    (C("quoted"), '""', False),
    (C("quoted"), "“多喝水。\"", False),  # mismatched pair
    # json_only: an object or array, bare or fenced
    (C("json_only"), '{"answer": "茶", "n": 2}', True),
    (C("json_only"), '```json\n["a", "b"]\n```', True),
    (C("json_only"), '```\n{"a": 1}\n```', True),
    (C("json_only"), 'Here: {"a": 1}', False),
    (C("json_only"), "42", False),
    (C("json_only"), '```json\n{"a": 1}\n```\n```json\n{"b": 2}\n```', False),
    # title
    (C("title"), "<<Morning Tea>>\nBoil water first.", True),
    (C("title"), "<<早睡早起>>\n每天同一时间睡觉。", True),
    (C("title"), "<< >> and <no title>", False),
    # postscript
    (C("postscript", marker="P.S."), "Rest well.\nP.S. Drink water.", True),
    (C("postscript", marker="P.S."), "Rest well.\np. s. drink water", True),
    (C("postscript", marker="P.S."), "Rest well.\nP.S.", False),
    (C("postscript", marker="P.S."), "Rest well.\nP.S.\nDrink water.", True),  # the text may start on the next line
    (C("postscript", marker="P.S."), "Rest well.\nP.S. \n  \n", False),
    (C("postscript", marker="P.S."), "Rest well. P.S. inline is no line start", False),
    (C("postscript", marker="附言"), "多休息。\n附言：记得复诊。", True),
    (C("postscript"), "多休息。\n附言：记得复诊。", False),  # the default marker is P.S.
    # highlighted_sections
    (C("highlighted_sections", n=2), "Use *warm* water and **rest**.", True),
    (C("highlighted_sections", n=2), "* 多喝水 *温水* 更好\n2 * 3 * 4", False),  # one highlight only
    (C("highlighted_sections", n=1), "**重点**：多休息", True),
    # placeholders
    (C("placeholders", n=2), "Dear [name], see you at [address].", True),
    (C("placeholders", n=2), "尊敬的[姓名]，见[链接](http://x.cn)", False),
    (C("placeholders", n=1), "[ ] empty", False),
    # two_responses
    (C("two_responses"), "Tea.\n******\nCoffee.", True),
    (C("two_responses"), "喝茶。\n  ******  \n喝咖啡。", True),
    (C("two_responses"), "Tea.\n******\nTea.", False),  # not different
    (C("two_responses"), "Tea.\n*******\nCoffee.", False),  # seven stars
    (C("two_responses"), "A\n******\nB\n******\nC", False),  # three parts
    (C("two_responses"), "Tea. ****** Coffee.", False),  # not on a line of its own
]


@pytest.mark.parametrize("constraint, reply, verdict", CASES, ids=[f"{c['type']}-{i}" for i, (c, _, _) in enumerate(CASES)])
def test_each_constraint_on_hand_written_replies(constraint, reply, verdict):
    validate(constraint, "case")
    assert follows(reply, constraint) is verdict


def test_every_type_has_a_passing_and_a_failing_case():
    seen = {(c["type"], v) for c, _, v in CASES}
    assert {(t, v) for t in TYPES for v in (True, False)} <= seen
    assert len(TYPES) >= 20


def _lenient_args(kind):
    """Arguments that almost any non-blank reply meets (at most 100, no 'zzz', ...)."""
    args = {}
    relation = TYPES[kind].args.get("relation")
    for name, arg in TYPES[kind].args.items():
        if arg.kind is int:
            args[name] = 100 if relation and "at_most" in relation.choices else 1
        elif arg.kind is list:
            args[name] = ["zzz"]
        elif arg.choices:
            args[name] = "at_most" if "at_most" in arg.choices else arg.choices[0]
        else:
            args[name] = "zzz"
    return args


@pytest.mark.parametrize("kind", list(TYPES))
def test_blank_replies_follow_nothing(kind):
    # even "no commas" or "at most 100 words": a reward must not pay for saying nothing
    constraint = {"type": kind, **_lenient_args(kind)}
    validate(constraint, "case")
    for reply in ("", "   \n\t "):
        assert not follows(reply, constraint)
        assert not follows(reply, constraint, loose=True)


def test_language_is_decided_by_word_units_with_a_majority():
    assert language_of("Python 中的列表和元组有什么区别？") == "zh"
    assert language_of("What is 通货膨胀 exactly, in simple words?") == "en"
    assert language_of("Hello 你") is None  # one each: no majority
    assert language_of("123 !!!") is None


def test_loose_variants_drop_first_and_last_lines_and_stars():
    reply = "Sure:\n**Tea**\nBye"
    assert loose_variants(reply) == [
        reply, "**Tea**\nBye", "Sure:\n**Tea**", "**Tea**", "Sure:\nTea\nBye", "Tea\nBye", "Sure:\nTea", "Tea",
    ]
    assert loose_variants("one line") == ["one line"]  # the cut variants are blank and dropped


@pytest.mark.parametrize("reply, constraint", [
    ("Sure! Here you go:\n\"Drink water and rest.\"", C("quoted")),
    ("Sure! Here you go:\n{\"answer\": \"rest\"}", C("json_only")),
    ("好的！以下是回答：\n“多喝水，多休息。”", C("quoted")),
    ("**Hope this helps.**", C("ends_with", phrase="Hope this helps.")),
    ("Rest well.\n**P.S.** Drink water.", C("postscript")),
    ("Here is the list:\n1. Rest\n2. Water\nLet me know if you need more!", C("sentence_count", relation="exactly", n=2)),
])
def test_loose_passes_what_strict_fails_after_a_preamble_or_markdown(reply, constraint):
    assert not follows(reply, constraint)
    assert follows(reply, constraint, loose=True)


def test_loose_does_not_rescue_a_reply_that_fails_in_every_variant():
    reply = "Sure!\nIt is, in short, rest.\nBye"
    assert not follows(reply, C("no_commas"), loose=True)
    assert not follows("Sure!\nTEA", C("lowercase"), loose=True)  # 'Sure!' alone has capitals too


def test_row_scores_are_fractions_or_all_or_nothing():
    row = [C("word_count", relation="at_most", n=10), C("no_commas"), C("end_with_question"), C("lowercase")]
    reply = "Rest, drink water, sleep."  # 4 words, commas, no question, capital R
    assert constraint_results(reply, row) == [True, False, False, False]
    assert score(reply, row) == 0.25
    assert score(reply, row, strict=True) == 0.0
    good = "rest and drink water?"
    assert score(good, row) == 1.0 and score(good, row, strict=True) == 1.0
    # loose scoring: the first line spoils 'lowercase' strictly, not loosely
    preamble = "Sure:\nrest and drink water?"
    assert score(preamble, row) == 0.75 and score(preamble, row, loose=True) == 1.0
    with pytest.raises(ValueError, match="at least one constraint"):
        score("x", [])


def test_prompt_and_constraint_level_accuracy_by_hand():
    rows = [
        ("rest?", [C("end_with_question"), C("lowercase")]),  # 2 of 2
        ("Rest.", [C("end_with_question"), C("lowercase")]),  # 0 of 2
        ("Sure:\nrest", [C("lowercase")]),  # strict 0 of 1, loose 1 of 1
    ]
    assert prompt_level_accuracy(rows) == pytest.approx(1 / 3)
    assert constraint_level_accuracy(rows) == pytest.approx(2 / 5)
    assert prompt_level_accuracy(rows, loose=True) == pytest.approx(2 / 3)
    assert constraint_level_accuracy(rows, loose=True) == pytest.approx(3 / 5)


WHERE = "data/constraints/train.jsonl:12"


@pytest.mark.parametrize("constraints, message", [
    ([C("word_count", relation="about", n=5)],
     "data/constraints/train.jsonl:12: constraints[0] (word_count): 'relation' must be one of at_least, at_most, exactly, "
     "got 'about'"),
    ([C("no_commas"), C("no_digits"), C("word_count", relation="at_most")],
     "data/constraints/train.jsonl:12: constraints[2] (word_count): missing argument 'n' (arguments: relation, n)"),
    ([C("word_count", relation="at_most", n="25")],
     "data/constraints/train.jsonl:12: constraints[0] (word_count): 'n' must be an integer ≥ 0, got '25'"),
    ([C("bullet_count", n=True)],
     "data/constraints/train.jsonl:12: constraints[0] (bullet_count): 'n' must be an integer ≥ 1, got True"),
    ([C("numbered_list", relation="at_most", n=3)],
     "data/constraints/train.jsonl:12: constraints[0] (numbered_list): 'relation' must be one of at_least, exactly, "
     "got 'at_most'"),
    ([C("include_keywords", keywords="tea")],
     "data/constraints/train.jsonl:12: constraints[0] (include_keywords): 'keywords' must be a non-empty list of "
     "non-blank strings, got 'tea'"),
    ([C("starts_with", phrase="  ")],
     "data/constraints/train.jsonl:12: constraints[0] (starts_with): 'phrase' must be non-blank text, got '  '"),
    ([C("lowercase", n=3)],
     "data/constraints/train.jsonl:12: constraints[0] (lowercase): unknown argument 'n' (arguments: none)"),
    ([C("response_language", language="fr")],
     "data/constraints/train.jsonl:12: constraints[0] (response_language): 'language' must be one of zh, en, got 'fr'"),
])
def test_bad_constraints_are_one_line_naming_file_line_index_and_type(constraints, message):
    with pytest.raises(DataError) as err:
        validate_constraints(constraints, WHERE)
    assert str(err.value) == message


def test_an_unknown_type_names_the_closest_and_every_known_type():
    with pytest.raises(DataError) as err:
        validate_constraints([C("no_commas"), C("word_cnt", relation="at_most", n=5)], WHERE)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{WHERE}: constraints[1] (word_cnt): unknown constraint type; did you mean 'word_count'?")
    assert all(t in message for t in TYPES)


def test_rows_without_a_usable_list_or_type_are_refused():
    for bad, message in [
        ([], "'constraints' must be a non-empty list"),
        ("word_count", "'constraints' must be a non-empty list"),
        (["word_count"], "constraints[0]: a constraint must be an object with a 'type', got str"),
        ([{"n": 3}], "constraints[0]: missing 'type'"),
    ]:
        with pytest.raises(DataError, match="^" + re.escape(f"{WHERE}: {message}")):
            validate_constraints(bad, WHERE)
    with pytest.raises(DataError, match=r"^constraint \(title\): unknown argument"):
        follows("x", C("title", text="x"))


def test_postscript_marker_defaults_to_ps():
    validate(C("postscript"), "case")
    assert follows("ok\nP.S. more", C("postscript"))


@pytest.mark.parametrize("constraints", [
    [C("lowercase"), C("uppercase")],
    [C("json_only"), C("bullet_count", n=2)],
    [C("json_only"), C("title")],
    [C("json_only"), C("postscript")],
    [C("json_only"), C("two_responses")],
    [C("word_count", relation="at_most", n=10), C("word_count", relation="at_least", n=50)],
    [C("response_language", language="zh"), C("lowercase")],
    [C("response_language", language="en"), C("chinese_char_count", relation="at_least", n=20)],
    [C("quoted"), C("starts_with", phrase="Sure")],
    [C("quoted"), C("ends_with", phrase="Thank you.")],
    [C("repeat_request", request="What is tea?"), C("starts_with", phrase="Sure")],
    [C("repeat_request", request="What is a nice tea to drink?"), C("word_count", relation="at_most", n=5)],
    [C("repeat_request", request="What is tea, really?"), C("no_commas")],
    [C("repeat_request", request="什么是复利？"), C("response_language", language="en")],
    [C("include_keywords", keywords=["tea"]), C("exclude_keywords", keywords=["tea"])],
    [C("keyword_frequency", keyword="tea", relation="at_most", n=0), C("include_keywords", keywords=["TEA"])],
    [C("starts_with", phrase="Yes, 3"), C("no_digits")],
    [C("end_with_question"), C("ends_with", phrase="Thank you.")],
    [C("sentence_count", relation="at_most", n=1), C("bullet_count", n=3)],
    [C("word_count", relation="at_most", n=5), C("numbered_list", relation="at_least", n=4)],
    [C("numbered_list", relation="at_least", n=2), C("no_digits")],
    [C("capital_word_frequency", relation="at_least", n=2), C("lowercase")],
    [C("response_language", language="en"), C("include_keywords", keywords=["重要"])],
])
def test_conflicting_constraints_are_incompatible(constraints):
    assert conflict(constraints) and not compatible(constraints)
    assert not compatible(constraints[::-1])


@pytest.mark.parametrize("constraints", [
    [C("lowercase"), C("starts_with", phrase="Sure")],  # phrases match in any case
    [C("quoted"), C("starts_with", phrase='"Sure')],
    [C("end_with_question"), C("ends_with", phrase="Anything else?")],
    [C("repeat_request", request="What is tea?"), C("word_count", relation="at_most", n=30)],
    [C("response_language", language="zh"), C("include_keywords", keywords=["重要"]), C("postscript", marker="P.S.")],
    [C("json_only"), C("word_count", relation="at_most", n=30), C("include_keywords", keywords=["tea"])],
    [C("sentence_count", relation="exactly", n=4), C("bullet_count", n=3)],
])
def test_consistent_constraints_are_compatible(constraints):
    assert compatible(constraints), conflict(constraints)
