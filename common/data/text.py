"""Text units shared by hygiene and rewards: words, with each CJK character its own word, so
Chinese (written without spaces) is measured as finely as English."""

from __future__ import annotations

import re

# Kana, CJK ideographs and Hangul: each character is one word, wherever it stands — a run of
# other word characters stops at one ("2023年3月" → 2023, 年, 3, 月), which plain \w+ would not do
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+", re.UNICODE)
_CJK_CHAR = re.compile(rf"[{_CJK}]")


def words(text: str) -> list[str]:
    """Lower-cased words and CJK characters; punctuation and spaces dropped."""
    return _TOKEN.findall(text.lower())


def is_cjk(token: str) -> bool:
    """Whether `token` (one of `words`) is a kana, CJK or Hangul character."""
    return len(token) == 1 and _CJK_CHAR.match(token) is not None


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def word_ends(text: str) -> list[int]:
    """Character offsets in `text` where each of its `words` ends (a cut there ends on a whole word)."""
    return [m.end() for m in _TOKEN.finditer(text)]
