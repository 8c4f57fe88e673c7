"""Text units shared by hygiene and rewards: words, with each CJK character its own word, so
Chinese (written without spaces) is measured as finely as English."""

from __future__ import annotations

import re

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|\w+", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased words and CJK characters; punctuation and spaces dropped."""
    return _TOKEN.findall(text.lower())


def ngrams(tokens: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
