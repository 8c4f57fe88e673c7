"""Does choosing what to label beat labelling at random? random vs margin vs ensemble acquisition
(annotation_ui/acquisition.py) on real human preferences, with a simulated annotator.

Pool: the shared HH-RLHF pairs (../shared/data/hh-rlhf), split by prompt into a pool to label
from and a held-out test set (30% of prompts) that no reward model ever trains on. The simulated
annotator answers from HH's own label (the reply people chose), shown the two replies in random
order. Reward model: an ensemble of `--members` Bradley–Terry heads on one frozen backbone (the
default model's last hidden state at the reply's last token, as a reward head reads it; features
computed once and cached), each head a logistic regression on feature differences fitted to a
bootstrap resample of the labels so far (scikit-learn). Every strategy trains and is scored with
the same ensemble; only the choice of the next labels differs:

  random    a uniform draw from the unlabelled pool
  margin    the pairs whose mean-ensemble reward gap is smallest
  ensemble  the pairs the heads disagree on most (BALD mutual information)

Start from `--seed_labels` random labels, add `--per_round` per round for `--rounds` rounds;
after each round, held-out pair accuracy of the mean ensemble. Repeated over `--seeds` seeds
(different seed sets, bootstraps and draws); reported: accuracy against labels with 95% t
intervals over seeds, and the area under each curve minus random's, paired by seed.

    .venv/bin/python bench/active_labels.py                      # features once (≈ 10 min on 2 cores), then ≈ 3 min
    .venv/bin/python bench/active_labels.py --seeds 10 --rounds 12 --png docs/active_labels.png
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from annotation_ui.acquisition import STRATEGIES, Candidate, select  # noqa: E402

HH = REPO.parent / "shared/data/hh-rlhf/harmless-base-1500.jsonl.gz"
CACHE = REPO / ".cache/bench/active_labels"


def load_pairs(path: Path) -> list[tuple[str, list, str, str]]:
    """(prompt key, prompt messages, chosen, rejected) of every usable HH pair."""
    from common.data.preferences import read_preferences

    out = []
    for g in read_preferences(path, "hh", unpaired=[]):
        chosen, rejected = g.responses[g.ranks.index(1)], g.responses[g.ranks.index(2)]
        if chosen.strip() == rejected.strip():
            continue  # nothing to learn from identical replies
        key = hashlib.sha1(json.dumps(g.prompt, sort_keys=True).encode()).hexdigest()[:16]
        out.append((key, g.prompt, chosen, rejected))
    return out


def features(pairs, model_spec: str, max_length: int, batch_size: int = 16) -> np.ndarray:
    """(pairs, 2, h): the frozen backbone's last hidden state at the last token of prompt + chosen
    (index 0) and prompt + rejected (index 1), the texts encoded as the reward model encodes them."""
    import torch

    from common.models import load_model_and_tokenizer
    from common.rewards.scorer import encode_response, pad_batch

    digest = hashlib.sha1(f"{HH.stat().st_size}:{model_spec}:{max_length}:{len(pairs)}".encode()).hexdigest()[:12]
    cached = CACHE / f"features-{digest}.npy"
    if cached.is_file():
        return np.load(cached)
    model, tokenizer = load_model_and_tokenizer(model_spec)
    model.eval()
    texts = [encode_response(tokenizer, prompt, reply, max_length) for _, prompt, c, r in pairs for reply in (c, r)]
    out = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            ids, mask = pad_batch(texts[start : start + batch_size], tokenizer.pad_token_id)
            hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (b, L, h)
            last = mask.sum(dim=1) - 1  # right padding: the last real token
            out.append(hidden[torch.arange(len(last)), last].float().numpy())
            print(f"\r  features {min(start + batch_size, len(texts))}/{len(texts)}", end="", flush=True)
    print()
    feats = np.concatenate(out).reshape(len(pairs), 2, -1)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(cached, feats)
    return feats


class Ensemble:
    """`members` Bradley–Terry heads r(x) = w·φ(x), each fitted to a bootstrap resample."""

    def __init__(self, members: int, c: float, rng: np.random.Generator):
        self.members, self.c, self.rng, self.w = members, c, rng, None

    def fit(self, diffs: np.ndarray) -> None:
        """`diffs`: (n, h) φ(preferred) − φ(other) of every label so far."""
        from sklearn.linear_model import LogisticRegression

        ws = []
        for _ in range(self.members):
            idx = self.rng.integers(0, len(diffs), len(diffs))
            x = np.concatenate([diffs[idx], -diffs[idx]])  # both orders: no intercept, symmetric
            y = np.concatenate([np.ones(len(idx)), np.zeros(len(idx))])
            ws.append(LogisticRegression(C=self.c, fit_intercept=False, max_iter=2000).fit(x, y).coef_[0])
        self.w = np.stack(ws)  # (M, h)

    def scores(self, feats: np.ndarray) -> np.ndarray:
        """(M, n, 2) rewards of each pair's two replies under each member."""
        return np.einsum("mh,nkh->mnk", self.w, feats)


def run(strategy: str, feats: np.ndarray, keys: list[str], pool: list[int], test: list[int], args, seed: int):
    rng = random.Random(seed)
    labelled = rng.sample(pool, args.seed_labels)  # the same seed set for every strategy at this seed
    order = {i: rng.random() < 0.5 for i in pool}  # the order the annotator sees the two replies in
    ensemble = Ensemble(args.members, args.c, np.random.default_rng(seed))
    curve = []
    for round_ in range(args.rounds + 1):
        diffs = feats[labelled, 0] - feats[labelled, 1]  # the annotator's label: HH's chosen
        ensemble.fit(diffs)
        s = ensemble.scores(feats[test]).mean(axis=0)
        curve.append((len(labelled), float(np.mean(s[:, 0] > s[:, 1]))))
        if round_ == args.rounds:
            break
        taken = set(labelled)
        rest = [i for i in pool if i not in taken]
        scores = ensemble.scores(feats[rest])  # (M, n, 2)
        cands = [Candidate(str(i), "harmless", scores[:, n, ::-1] if order[i] else scores[:, n])
                 for n, i in enumerate(rest)]
        chosen = select(cands, strategy, args.per_round, seed=seed * 1000 + round_)
        labelled += [int(c.key) for c in chosen]
    return curve


def t_interval(values: list[float]) -> tuple[float, float, float]:
    from scipy import stats

    x = np.asarray(values, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float("nan"), float("nan")
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seed_labels", type=int, default=40)
    ap.add_argument("--per_round", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--members", type=int, default=5, help="ensemble heads (bootstrap resamples)")
    ap.add_argument("--c", type=float, default=0.05, help="inverse L2 strength of each head (standardised features)")
    ap.add_argument("--model", default="default", help="the frozen backbone")
    ap.add_argument("--max_length", type=int, default=128, help="tokens per text, cut from the left (as the RM)")
    ap.add_argument("--png", default=None, help="write the learning curves here")
    ap.add_argument("--json", default=None, help="write every curve here")
    args = ap.parse_args()
    if not HH.is_file():
        sys.exit(f"active_labels: {HH} not found (the shared HH pairs sit beside this checkout)")
    t0 = time.perf_counter()
    pairs = load_pairs(HH)
    feats = features(pairs, args.model, args.max_length)
    flat = feats.reshape(-1, feats.shape[-1])
    feats = (feats - flat.mean(axis=0)) / (flat.std(axis=0) + 1e-6)  # standardised, from features alone
    keys = [p[0] for p in pairs]
    prompts = sorted(set(keys))
    random.Random(0).shuffle(prompts)
    held = set(prompts[: int(0.3 * len(prompts))])
    test = [i for i, k in enumerate(keys) if k in held]
    pool = [i for i, k in enumerate(keys) if k not in held]
    need = args.seed_labels + args.rounds * args.per_round
    if need > len(pool):
        sys.exit(f"active_labels: {need} labels asked for, the pool has {len(pool)} pairs")
    print(f"{len(pairs)} HH pairs: pool {len(pool)}, held-out test {len(test)} (by prompt); features "
          f"{feats.shape[-1]}-d ({time.perf_counter() - t0:.0f} s)")
    curves = {s: [run(s, feats, keys, pool, test, args, seed) for seed in range(args.seeds)] for s in STRATEGIES}
    labels = [n for n, _ in curves["random"][0]]
    print(f"\nheld-out pair accuracy (mean ensemble), mean [95% t-interval] over {args.seeds} seeds")
    print(f"{'labels':>7}" + "".join(f"{s:>24}" for s in STRATEGIES))
    for r, n in enumerate(labels):
        cells = [t_interval([100 * c[r][1] for c in curves[s]]) for s in STRATEGIES]
        print(f"{n:>7}" + "".join(f"{m:>10.1f} [{lo:5.1f}, {hi:5.1f}]" for m, lo, hi in cells))
    area = {s: [np.mean([a for _, a in c]) for c in curves[s]] for s in STRATEGIES}
    print("\narea under the curve (mean accuracy over rounds) minus random's, paired by seed, percentage points:")
    for s in STRATEGIES[1:]:
        m, lo, hi = t_interval([100 * (a - b) for a, b in zip(area[s], area["random"])])
        print(f"  {s:<9} {m:+.2f} [{lo:+.2f}, {hi:+.2f}]")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "curves": curves}, indent=1))
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2))
        for s in STRATEGIES:
            stats_ = [t_interval([100 * c[r][1] for c in curves[s]]) for r in range(len(labels))]
            ax.plot(labels, [m for m, _, _ in stats_], marker=".", label=s)
            ax.fill_between(labels, [lo for _, lo, _ in stats_], [hi for _, _, hi in stats_], alpha=0.15)
        ax.set_xlabel("labels (pairs)")
        ax.set_ylabel("held-out pair accuracy (%)")
        ax.set_title(f"Choosing what to label: HH harmless pairs, {args.members}-head ensemble, {args.seeds} seeds")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.png, dpi=120)
        print(f"curves: {args.png}")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
