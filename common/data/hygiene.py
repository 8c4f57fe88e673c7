"""Data hygiene steps shared by the stages, each returning the indices it keeps.

A `HygieneReport` records every step's counts (in → kept, dropped) so runs can print and
save them. Near-duplicates are found with MinHash LSH from `datasketch` over token 3-gram
shingles; tokens are words, and each CJK character counts as a word, so Chinese text
(which has no spaces) is compared as finely as English.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from common.data.text import ngrams, words


@dataclass
class HygieneReport:
    steps: list[dict] = field(default_factory=list)

    def add(self, step: str, before: int, after: int) -> None:
        self.steps.append({"step": step, "in": before, "kept": after, "dropped": before - after})

    def table(self) -> str:
        width = max(len(s["step"]) for s in self.steps) if self.steps else 4
        lines = [f"{'step':<{width}}  {'in':>7}  {'kept':>7}  {'dropped':>7}"]
        lines += [f"{s['step']:<{width}}  {s['in']:>7}  {s['kept']:>7}  {s['dropped']:>7}" for s in self.steps]
        return "\n".join(lines)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.steps, indent=2))


def normalize(text: str) -> str:
    """Case- and whitespace-insensitive form used for exact duplicate detection."""
    return " ".join(text.lower().split())


def exact_duplicates(texts: Sequence[str]) -> list[int]:
    """Indices of the first occurrence of each distinct (normalized) text."""
    seen: set[bytes] = set()
    keep = []
    for i, text in enumerate(texts):
        digest = hashlib.blake2b(normalize(text).encode(), digest_size=16).digest()
        if digest not in seen:
            seen.add(digest)
            keep.append(i)
    return keep


def shingles(text: str, n: int = 3) -> set[str]:
    tokens = words(text)
    if len(tokens) < n:
        return {" ".join(tokens)}
    return {" ".join(gram) for gram in ngrams(tokens, n)}


def near_duplicates(
    texts: Sequence[str], threshold: float = 0.85, num_perm: int = 128, seed: int = 1
) -> list[int]:
    """Indices kept after dropping texts whose estimated Jaccard similarity (3-gram shingles)
    to an earlier kept text is ≥ `threshold`."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    keep = []
    for i, text in enumerate(tqdm(texts, desc="near-duplicates", leave=False, mininterval=1.0)):
        mh = MinHash(num_perm=num_perm, seed=seed)
        mh.update_batch([s.encode() for s in shingles(text)])
        if lsh.query(mh):
            continue
        lsh.insert(str(i), mh)
        keep.append(i)
    return keep


def mix_by_weight(rows: list, weights: Sequence[float], rng: random.Random) -> list:
    """Rows carry `.source` (an index into `weights`); each source contributes weight × its
    rows — whole copies, then a random sample for the fraction — and the result is shuffled."""
    out: list = []
    for i, weight in enumerate(weights):
        own = [r for r in rows if r.source == i]
        whole = int(weight)
        out += own * whole + rng.sample(own, round(len(own) * (weight - whole)))
    rng.shuffle(out)
    return out


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded shuffle of range(n) cut into (train, validation); validation gets
    round(n · val_fraction) items, at least 1 when val_fraction > 0 and n ≥ 2."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = round(n * val_fraction)
    if val_fraction > 0 and n >= 2:
        n_val = max(1, n_val)
    n_val = min(n_val, max(n - 1, 0))
    return sorted(order[n_val:]), sorted(order[:n_val])
