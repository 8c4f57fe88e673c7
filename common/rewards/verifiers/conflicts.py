"""Which constraints cannot be asked of one reply together — contradictory ("all lowercase" and "all
uppercase"), or leaving no room for each other ("only JSON" and "a postscript") — so that a prompt
generator never asks for the impossible: `compatible(constraints)`, and `conflict(constraints)` saying why.

The table is conservative: a pair that could be met only by an odd reply (two list styles at once,
an English reply that must hold Chinese keywords) counts as a conflict too, because the data is for
teaching small models to follow instructions, not for riddles.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from common.rewards.verifiers import checks
from common.rewards.verifiers.registry import TYPES

_STRUCTURE = ("bullet_count", "numbered_list", "title", "postscript", "two_responses", "paragraph_count",
              "sentence_count", "highlighted_sections", "placeholders")
_PAIRS = [
    (("lowercase", "uppercase"), "one case for all letters"),
    # a reply that is only JSON has no room for markup, framing text or sentences to count
    *((("json_only", t), "the whole reply must be JSON") for t in (
        *_STRUCTURE, "quoted", "starts_with", "ends_with", "repeat_request", "end_with_question", "no_commas")),
    *((("two_responses", t), "which of the two responses would it apply to?") for t in (
        "quoted", "repeat_request", "paragraph_count", "sentence_count", "bullet_count", "numbered_list")),
    *((("quoted", t), "the quotes must be the reply's first and last characters") for t in (
        "bullet_count", "numbered_list", "end_with_question", "repeat_request")),
    (("repeat_request", "starts_with"), "both say how the reply starts"),
    (("bullet_count", "numbered_list"), "one list style per reply"),
    (("ends_with", "postscript"), "both say how the reply ends"),
    (("no_digits", "numbered_list"), "a numbered list has digits"),
    # one length budget per reply: these measure the same length in different units
    (("word_count", "chinese_char_count"), "two length budgets"),
    (("word_count", "char_count"), "two length budgets"),
    (("chinese_char_count", "char_count"), "two length budgets"),
]
EXCLUSIVE: dict[frozenset[str], str] = {frozenset(pair): why for pair, why in _PAIRS}
_COUNTED = [name for name, kind in TYPES.items() if "relation" in kind.args]


def _least(c: dict) -> int:
    """The smallest count a counted constraint allows."""
    return c["n"] if c.get("relation", "exactly") in ("at_least", "exactly") else 0


def _most(c: dict) -> float:
    """The largest count a counted constraint allows (inf when unbounded)."""
    return c["n"] if c.get("relation", "exactly") in ("at_most", "exactly") else math.inf


def _required_keywords(by: dict[str, dict]) -> list[str]:
    out = list(by.get("include_keywords", {}).get("keywords", []))
    if "keyword_frequency" in by and _least(by["keyword_frequency"]) > 0:
        out.append(by["keyword_frequency"]["keyword"])
    return out


def _forbidden_keywords(by: dict[str, dict]) -> list[str]:
    out = list(by.get("exclude_keywords", {}).get("keywords", []))
    if "keyword_frequency" in by and _most(by["keyword_frequency"]) == 0:
        out.append(by["keyword_frequency"]["keyword"])
    return out


def _forced_texts(by: dict[str, dict]) -> list[str]:
    """Text the reply must contain word for word (phrases, required keywords, the request)."""
    texts = [by[t][a] for t, a in (("starts_with", "phrase"), ("ends_with", "phrase"), ("repeat_request", "request"))
             if t in by]
    return texts + _required_keywords(by)


def _quotes(by):
    if "quoted" in by and "starts_with" in by and by["starts_with"]["phrase"].lstrip()[:1] not in '"“':
        return "a quoted reply starts with a quote, not the phrase"
    if "quoted" in by and "ends_with" in by and by["ends_with"]["phrase"].rstrip()[-1:] not in '"”':
        return "a quoted reply ends with a quote, not the phrase"
    if "end_with_question" in by and "ends_with" in by and by["ends_with"]["phrase"].rstrip()[-1:] not in "?？":
        return "the closing phrase is not a question"
    return None


def _script(by):
    """Case and letter counts need Latin letters; Chinese-character counts need Chinese; text the reply
    must contain must be in the language the reply must be in."""
    language = by.get("response_language", {}).get("language")
    needs_latin = [t for t in ("lowercase", "uppercase") if t in by]
    needs_latin += [t for t in ("letter_frequency", "capital_word_frequency") if t in by and _least(by[t]) > 0]
    needs_han = "chinese_char_count" in by and _least(by["chinese_char_count"]) > 0
    if language == "zh" and needs_latin:
        return f"a Chinese reply has no Latin letters for {needs_latin[0]}"
    if needs_han and (language == "en" or "lowercase" in by or "uppercase" in by):
        return "Chinese characters asked of a reply that must be English or in one letter case"
    caps = by.get("capital_word_frequency")
    if caps and (("lowercase" in by and _least(caps) > 0) or ("uppercase" in by and _most(caps) < math.inf)):
        return "capital words against one letter case"
    for text in _forced_texts(by):
        if language and checks.language_of(text) not in (None, language):
            return f"{text!r} is not in the reply's language ({language})"
    return None


def _keywords(by):
    if by.get("keyword_frequency", {}).get("keyword") in by.get("include_keywords", {}).get("keywords", []):
        return "one keyword asked for twice"
    forbidden = [k.casefold() for k in _forbidden_keywords(by)]
    for k in (k.casefold() for k in _required_keywords(by)):
        if any(k in f or f in k for f in forbidden):
            return f"keyword {k!r} both required and forbidden"
    forced = _forced_texts(by) + ([by["postscript"].get("marker", "P.S.")] if "postscript" in by else [])
    for text in forced:
        if "no_commas" in by and not checks.no_commas(text):
            return f"{text!r} has a comma"
        if "no_digits" in by and not checks.no_digits(text):
            return f"{text!r} has a digit"
        if any(checks.keyword_count(text, f) for f in _forbidden_keywords(by)):
            return f"{text!r} holds a forbidden keyword"
    return None


def _repeat_budget(by):
    """The repeated request is part of the reply: it must leave room under every upper bound."""
    if "repeat_request" not in by:
        return None
    request = by["repeat_request"]["request"]
    for name in _COUNTED:
        c = by.get(name)
        if c is None or _most(c) == math.inf:
            continue
        room = c["n"] - (1 if c["relation"] == "exactly" else 0)  # exactly n: the answer needs one more
        args = {k: v for k, v in c.items() if k not in ("type", "relation", "n")}
        if room < 0 or not TYPES[name].check(request, relation="at_most", n=room, **args):
            return f"the request alone breaks {name}"
    return None


def _lengths(by):
    """Each list item, paragraph, response, title or postscript is a line of its own (a sentence, by the
    sentence rule) and needs a couple of words."""
    parts = max([_least(by[t]) for t in ("sentence_count", "paragraph_count", "numbered_list") if t in by]
                + [by["bullet_count"]["n"] if "bullet_count" in by else 0, 2 if "two_responses" in by else 1])
    lines = parts + ("title" in by) + ("postscript" in by)
    words_cap = min([_most(by[t]) for t in ("word_count", "chinese_char_count", "char_count") if t in by] + [math.inf])
    if words_cap < 2 * lines:
        return f"{lines} lines of text in at most {words_cap} words"
    line_parts = max([_least(by[t]) for t in ("paragraph_count", "numbered_list") if t in by]
                     + [by["bullet_count"]["n"] if "bullet_count" in by else 0, 2 if "two_responses" in by else 1])
    if "sentence_count" in by and _most(by["sentence_count"]) < line_parts + ("title" in by) + ("postscript" in by):
        return "more lines than sentences allowed"
    return None


RULES: list[Callable[[dict[str, dict]], str | None]] = [_quotes, _script, _keywords, _repeat_budget, _lengths]


def conflict(constraints: list[dict]) -> str | None:
    """Why these (valid) constraints cannot be asked together, or None when they can."""
    by: dict[str, dict] = {}
    for c in constraints:
        if c["type"] in by:
            return f"{c['type']} twice"
        by[c["type"]] = c
    for a in by:
        for b in by:
            why = EXCLUSIVE.get(frozenset((a, b))) if a < b else None
            if why:
                return f"{a} + {b}: {why}"
    for rule in RULES:
        why = rule(by)
        if why:
            return why
    return None


def compatible(constraints: list[dict]) -> bool:
    """True when one reply can follow all of `constraints` (see `conflict`)."""
    return conflict(constraints) is None
