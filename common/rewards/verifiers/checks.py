"""The instruction checks: each `check(reply, **args) -> bool` decides whether a reply follows one
constraint. Pure functions on text; English and Chinese alike.

Conventions every check shares:
- a blank reply (empty or only whitespace) follows no constraint — not even "no commas": a reward
  must not pay for saying nothing;
- words are `common.data.text.words`: runs of Latin letters and digits, and each CJK character on its
  own (Chinese is written without spaces, and one character carries about what one English word does);
- Latin text is matched case-insensitively; CJK text has no word boundaries, so a Chinese keyword
  or phrase matches wherever its characters stand;
- `relation` is one of at_least / at_most / exactly, comparing a count with `n`.
"""

from __future__ import annotations

import functools
import json
import re

from common.data.text import words

RELATIONS = ("at_least", "at_most", "exactly")
LANGUAGES = ("zh", "en")

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"  # the ranges common.data.text counts one word each
_HAN = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")  # Chinese characters (汉字) only
_LATIN = re.compile("[a-zA-Z\u00c0-\u024f]")
_LETTER = re.compile(r"[^\W\d_]")  # any letter, Han characters included
_WORDISH = rf"[^\W{_CJK}]"  # a letter or digit that is not CJK: where a Latin word may not continue
_WORDISH_RE = re.compile(_WORDISH)
_CUT = re.compile(_WORDISH * 2)  # two such characters side by side: a boundary between them cuts a word
# a sentence ends at . ! ? … before a space or the end (so 3.14 stays whole), at 。！？ anywhere, or at a
# line break; closing quotes and brackets stay with their sentence
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|$)|[。！？]+[”’」』）)]*|\n")
_BULLET = re.compile(r"^[ \t]*[*-][ \t]+\S", re.M)
_NUMBERED = re.compile(r"^[ \t]*\d{1,3}(?:[.)][ \t]+|[、．）][ \t]*)\S", re.M)
_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n(.*?)\n?[ \t]*```", re.S | re.I)
_TITLE = re.compile(r"<<([^<>\n]+)>>")
_HIGHLIGHT = re.compile(r"\*\*([^\n*]+)\*\*|\*([^\n*]+)\*")
_PLACEHOLDER = re.compile(r"\[([^\[\]\n]+)\](?!\()")  # not a markdown link's [text](url)
_SEPARATOR = re.compile(r"^[ \t]*\*{6}[ \t]*$", re.M)


def compare(count: int, relation: str, n: int) -> bool:
    """`count` against `n` by `relation` (at_least: ≥, at_most: ≤, exactly: =)."""
    if relation == "at_least":
        return count >= n
    if relation == "at_most":
        return count <= n
    if relation == "exactly":
        return count == n
    raise ValueError(f"relation must be one of {', '.join(RELATIONS)}, got {relation!r}")


def answered(check):
    """A check that fails every blank reply (see the module's conventions)."""

    @functools.wraps(check)
    def wrapper(reply: str, *args, **kwargs) -> bool:
        return bool(reply.strip()) and check(reply, *args, **kwargs)

    return wrapper


def _norm(text: str) -> str:
    """Whitespace runs → one space, ends stripped, case folded: how phrases are compared."""
    return " ".join(text.split()).casefold()


def sentences(text: str) -> list[str]:
    """Sentences: pieces between sentence ends that hold at least one letter ('1.' of a list is none).
    Abbreviations such as 'e.g. x' end a sentence too: a rule, not a parser."""
    return [s for s in _SENTENCE_END.split(text) if _LETTER.search(s)]


def paragraphs(text: str) -> list[str]:
    """Non-blank pieces between blank lines."""
    return [p for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def han_count(text: str) -> int:
    return len(_HAN.findall(text))


def language_of(text: str) -> str | None:
    """'zh' when more than half of the words with letters are Chinese characters, 'en' when more than
    half are Latin words, else None (no letters, or no majority).

    Words, not letters: a Chinese sentence naming `Python` and `len()` has 3 Latin words against
    a dozen characters, but more Latin letters than characters."""
    units = [w for w in words(text) if _LETTER.search(w)]
    han = sum(1 for w in units if _HAN.match(w))
    latin = sum(1 for w in units if _LATIN.search(w))
    if 2 * han > len(units):
        return "zh"
    if 2 * latin > len(units):
        return "en"
    return None


@functools.lru_cache(maxsize=1024)
def _keyword_re(keyword: str) -> re.Pattern:
    """A keyword as a pattern: case-insensitive, any whitespace between its words, and — at an end
    that is a Latin letter or digit — a word boundary ('tea' is not in 'teacher'; '茶' is in '喝茶')."""
    body = r"\s+".join(map(re.escape, keyword.split()))
    left = rf"(?<!{_WORDISH})" if _WORDISH_RE.match(keyword.strip()[0]) else ""
    right = rf"(?!{_WORDISH})" if _WORDISH_RE.match(keyword.strip()[-1]) else ""
    return re.compile(left + body + right, re.I)


def keyword_count(text: str, keyword: str) -> int:
    """Non-overlapping occurrences of `keyword` in `text` (see `_keyword_re`)."""
    return len(_keyword_re(keyword).findall(text))


def _bounded(text: str, start: int, end: int) -> bool:
    """True when text[start:end] does not cut a Latin word or number in two."""
    before = text[start - 1 : start + 1] if start > 0 else ""
    after = text[end - 1 : end + 1] if end < len(text) else ""
    return not _CUT.fullmatch(before) and not _CUT.fullmatch(after)


# --- length ---------------------------------------------------------------------------------


@answered
def word_count(reply: str, relation: str, n: int) -> bool:
    """Words (each Chinese character one word) compared with n."""
    return compare(len(words(reply)), relation, n)


@answered
def sentence_count(reply: str, relation: str, n: int) -> bool:
    """Sentences, ended by . ! ? (before a space or the end), 。！？ or a line break, compared with n."""
    return compare(len(sentences(reply)), relation, n)


@answered
def paragraph_count(reply: str, relation: str, n: int) -> bool:
    """Paragraphs (separated by blank lines) compared with n."""
    return compare(len(paragraphs(reply)), relation, n)


@answered
def chinese_char_count(reply: str, relation: str, n: int) -> bool:
    """Chinese characters (汉字; not punctuation, kana or Latin) compared with n."""
    return compare(han_count(reply), relation, n)


@answered
def char_count(reply: str, relation: str, n: int) -> bool:
    """Characters other than whitespace compared with n."""
    return compare(sum(1 for c in reply if not c.isspace()), relation, n)


# --- language and case ----------------------------------------------------------------------


@answered
def response_language(reply: str, language: str) -> bool:
    """The reply is written in `language` (zh or en) by script: see `language_of`."""
    return language_of(reply) == language


@answered
def lowercase(reply: str) -> bool:
    """Every cased letter is lowercase, and there is at least one: a reply with no Latin (or other
    cased) letters — Chinese, digits — fails, because it did not write anything in lowercase and a
    policy must not earn this reward by switching script or replying with numbers."""
    return any(c.islower() for c in reply) and not any(c.isupper() for c in reply)


@answered
def uppercase(reply: str) -> bool:
    """Every cased letter is uppercase, and there is at least one (as `lowercase`)."""
    return any(c.isupper() for c in reply) and not any(c.islower() for c in reply)


@answered
def letter_frequency(reply: str, letter: str, relation: str, n: int) -> bool:
    """Occurrences of a Latin letter, either case, compared with n."""
    return compare(reply.lower().count(letter.lower()), relation, n)


@answered
def capital_word_frequency(reply: str, relation: str, n: int) -> bool:
    """Latin words of two or more letters written in capitals ('NOT', 'USA'; not 'I' or 'A') compared with n."""
    caps = [w for w in re.findall(r"[a-zA-Z\u00c0-\u024f]+", reply) if len(w) >= 2 and w.isupper()]
    return compare(len(caps), relation, n)


# --- what the reply says --------------------------------------------------------------------


@answered
def starts_with(reply: str, phrase: str) -> bool:
    """The reply begins with `phrase` (leading whitespace ignored, whitespace runs equal, any case);
    'Sure' does not start 'Surely'."""
    text, head = _norm(reply), _norm(phrase)
    return text.startswith(head) and _bounded(text, 0, len(head))


@answered
def ends_with(reply: str, phrase: str) -> bool:
    """The reply ends with `phrase` (trailing whitespace ignored, whitespace runs equal, any case)."""
    text, tail = _norm(reply), _norm(phrase)
    return text.endswith(tail) and _bounded(text, len(text) - len(tail), len(text))


@answered
def include_keywords(reply: str, keywords: list[str]) -> bool:
    """Every keyword appears at least once (see `keyword_count`)."""
    return all(keyword_count(reply, k) for k in keywords)


@answered
def exclude_keywords(reply: str, keywords: list[str]) -> bool:
    """No keyword appears."""
    return not any(keyword_count(reply, k) for k in keywords)


@answered
def keyword_frequency(reply: str, keyword: str, relation: str, n: int) -> bool:
    """Occurrences of `keyword` compared with n."""
    return compare(keyword_count(reply, keyword), relation, n)


@answered
def repeat_request(reply: str, request: str) -> bool:
    """The reply begins with the request, word for word (whitespace runs equal, any case)."""
    return _norm(reply).startswith(_norm(request))


@answered
def end_with_question(reply: str) -> bool:
    """The last character (trailing whitespace ignored) is a question mark, ? or ？."""
    return reply.rstrip()[-1] in "?？"


@answered
def no_commas(reply: str) -> bool:
    """No comma: ASCII ',', full-width '，' or the enumeration comma '、'."""
    return not any(c in ",，、" for c in reply)


@answered
def no_digits(reply: str) -> bool:
    """No digit of any width (0-9, ０-９); numbers written as words or 汉字 are fine."""
    return not re.search(r"\d", reply)


# --- format ---------------------------------------------------------------------------------


@answered
def bullet_count(reply: str, n: int) -> bool:
    """Exactly n markdown bullet lines ('* ' or '- ' first on a line)."""
    return len(_BULLET.findall(reply)) == n


@answered
def numbered_list(reply: str, relation: str, n: int) -> bool:
    """Numbered lines ('1. ', '1) ', '1、', '１．') compared with n (at_least or exactly)."""
    return compare(len(_NUMBERED.findall(reply)), relation, n)


@answered
def quoted(reply: str) -> bool:
    """The whole reply (outer whitespace ignored) is inside one pair of double quotes, "…" or “…”,
    around something that is not blank."""
    text = reply.strip()
    return len(text) > 2 and (text[0], text[-1]) in {('"', '"'), ("“", "”")} and bool(text[1:-1].strip())


@answered
def json_only(reply: str) -> bool:
    """The whole reply is a JSON object or array, bare or inside one ``` (or ```json) fence. A bare
    number or string is valid JSON but not what 'answer in JSON' asks for — and a one-token reply
    would pass."""
    text = reply.strip()
    fenced = _FENCE.fullmatch(text)
    try:
        value = json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        return False
    return isinstance(value, (dict, list))


@answered
def title(reply: str) -> bool:
    """A title in double angle brackets somewhere, <<like this>>, with something inside."""
    return any(t.strip() for t in _TITLE.findall(reply))


@answered
def postscript(reply: str, marker: str = "P.S.") -> bool:
    """A line that starts with `marker` (any case; 'P. S.' counts for 'P.S.'), followed by some text on
    that line or the next ones: 'P.S. call me', '附言：记得复诊'. A marker with nothing after it is no postscript."""
    head = r"\s*".join(re.escape(c) for c in marker if not c.isspace())
    start = re.compile(rf"^[ \t]*{head}(.*)", re.M | re.I | re.S)
    return any(_LETTER.search(m.group(1)) for m in start.finditer(reply))


@answered
def highlighted_sections(reply: str, n: int) -> bool:
    """At least n markdown highlights, *text* or **text**, with no space just inside the stars
    (so '2 * 3 * 4' is none); a bullet's leading '* ' is not a star of a highlight."""
    body = re.sub(r"^[ \t]*[*-][ \t]+", "", reply, flags=re.M)
    found = (m.group(1) or m.group(2) for m in _HIGHLIGHT.finditer(body))
    return sum(1 for t in found if t.strip() and t == t.strip()) >= n


@answered
def placeholders(reply: str, n: int) -> bool:
    """At least n placeholders in square brackets, [name] (a markdown link's [text](url) is none)."""
    return sum(1 for t in _PLACEHOLDER.findall(reply) if t.strip()) >= n


@answered
def two_responses(reply: str) -> bool:
    """Two responses separated by a line of exactly six asterisks (******): two parts, neither
    blank, and different (whitespace at their ends ignored)."""
    parts = [p.strip() for p in _SEPARATOR.split(reply)]
    return len(parts) == 2 and all(parts) and parts[0] != parts[1]
