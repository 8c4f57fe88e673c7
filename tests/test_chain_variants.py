"""bench/chain_variants.py: the blind reading's tally by hand, and a table row from hand-made runs."""

from __future__ import annotations

import importlib.util
import json

import pytest

from helpers.stages import REPO

spec = importlib.util.spec_from_file_location("chain_variants", REPO / "bench/chain_variants.py")
chain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(chain)


def blind(folder, key: dict, verdicts: dict):
    folder.mkdir(parents=True)
    (folder / "key.json").write_text(json.dumps(key))
    (folder / "verdicts.json").write_text(json.dumps(verdicts))
    return folder


def test_verdicts_map_through_the_key_to_the_policy(tmp_path):
    key = {"1": {"A": "ppo", "B": "sft"}, "2": {"A": "sft", "B": "ppo"}, "3": {"A": "sft", "B": "ppo"},
           "4": {"A": "ppo", "B": "sft"}}
    verdicts = {"1": {"verdict": "A", "hollow_A": False, "hollow_B": True},  # ppo better
                "2": {"verdict": "A", "hollow_A": False, "hollow_B": True},  # sft better, ppo hollow
                "3": {"verdict": "tie", "hollow_A": True, "hollow_B": True},
                "4": {"verdict": "B", "hollow_A": True, "hollow_B": False}}  # sft better
    got = chain.blind_figures(blind(tmp_path / "b", key, verdicts), "ppo")
    assert (got["better"], got["worse"], got["tie"], got["n"]) == (1, 2, 1, 4)
    assert got["win"]["mean"] == pytest.approx((1 + 0 + 0.5 + 0) / 4)
    assert got["hollow"] == {"policy": 3, "baseline": 2}
    assert chain.blind_figures(tmp_path / "none", "ppo") is None


def ci(mean):
    return {"mean": mean, "low": mean - 0.1, "high": mean + 0.1, "n": 10}


def test_a_row_per_decoding_from_the_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(chain, "REPO", tmp_path)
    body = {"baseline": "sft",
            "policies": {"sft": {"length": ci(40), "hollow": {"distinct_2": ci(0.7)}},
                         "ppo": {"length": ci(20), "hollow": {"distinct_2": ci(0.5)}}},
            "comparisons": {"ppo": {"win_rate": ci(0.8), "lc_win_rate": {
                "mean": None, "low": None, "high": None, "withheld": "lengths differ too much"}}}}
    report = {**body, "decodings": {"greedy": body}}
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval/eval.json").write_text(json.dumps(report))
    (tmp_path / "run").mkdir()
    (tmp_path / "run/timing.json").write_text(json.dumps({"total_seconds": 90, "peak_rss_gb": 3.5, "phases": {}}))
    blind(tmp_path / "blind", {"1": {"A": "ppo", "B": "sft"}}, {"1": {"verdict": "B"}})
    rows = chain.rows({"name": "v", "runs": ["run"], "policy": "ppo", "eval": "eval", "blind": {"greedy": "blind"}})
    assert [r[1] for r in rows] == ["T 1", "greedy"]
    assert rows[0][2] == "80% [70, 90]" and rows[0][3] == "withheld (lengths differ too much)"
    assert rows[0][4] == rows[0][5] == "—"  # no other reward model, no held-out member
    assert rows[0][6] == "20 (40)" and rows[0][7] == "distinct-2 0.50 (0.70)" and rows[0][8] == "not read"
    assert rows[1][8].startswith("0/1/0 → 0% [0, 0]") and rows[1][9:] == ["1m 30s", "3.5 GiB"]
