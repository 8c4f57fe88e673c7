"""Reference-based accuracy, each in [0, 1], on words (CJK characters count as words).

Own implementations rather than `rouge-score`: its tokenizer drops non-ASCII text, so it
scores every Chinese answer 0.
"""

from __future__ import annotations

import re
from collections import Counter
from decimal import Decimal, InvalidOperation

from common.data.text import words


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the word sequences are equal (case and punctuation ignored)."""
    return float(words(prediction) == words(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of word precision and recall, counting repeats (SQuAD style)."""
    pred, ref = words(prediction), words(reference)
    if not pred or not ref:
        return float(pred == ref)
    overlap = sum((Counter(pred) & Counter(ref)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred), overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence, O(len(a)·len(b)) time, O(len(b)) memory."""
    row = [0] * (len(b) + 1)
    for x in a:
        prev_diag = 0
        for j, y in enumerate(b, start=1):
            prev_diag, row[j] = row[j], prev_diag + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F1: LCS-based precision and recall over words."""
    pred, ref = words(prediction), words(reference)
    if not pred or not ref:
        return float(pred == ref)
    lcs = lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


# a number as people write it: sign, thousands separators, decimals ("-1,234.50"); "$" and "%" around it are ignored
NUMBER = re.compile(r"-?\d(?:[\d,]*\d)?(?:\.\d+)?")


def final_number_of(text: str) -> Decimal | None:
    """The answer a reply commits to, GSM8K's way: the first number after the last '####' when
    the text has one, else the last number in the text; None when there is none."""
    tail = text.rsplit("####", 1)
    found = NUMBER.findall(tail[1]) if len(tail) == 2 else []
    found = found[:1] if found else NUMBER.findall(text)[-1:]
    if not found:
        return None
    try:
        return Decimal(found[0].replace(",", ""))
    except InvalidOperation:
        return None


def final_number(prediction: str, reference: str) -> float:
    """1.0 when the prediction's final number equals the reference's (72 = 72.00 = 72.0; "1,000" =
    1000) — exact match on the answer of a math word problem, whatever the reasoning around it."""
    ref = final_number_of(reference)
    return float(ref is not None and final_number_of(prediction) == ref)


METRICS = {"token_f1": token_f1, "exact_match": exact_match, "rouge_l": rouge_l, "final_number": final_number}
