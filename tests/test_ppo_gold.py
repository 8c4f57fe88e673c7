"""PPO guarding against its reward model: the sanity floor refusing a flawed model before anything is
written, an ensemble of reward models, and gold-reward early stopping (Gao et al. 2022) — the rule by
hand, and a tiny run whose gold reward is the proxy's opposite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from common.config import ConfigError
from common.tracking import read_metrics
from ppo.__main__ import main
from ppo.config import GoldStop
from ppo.gold import GoldCurve, gold_decision

from helpers.stages import REPO

TINY = str(REPO / "configs/ppo/tiny.yaml")


def args(model_dir, out: Path, *extra: str) -> list[str]:
    return ["--config", TINY, "--policy", str(model_dir), "--output_root", str(out), "--trackers", "[]",
            "--prompts", f"[{{path: {REPO}/data/prompts/general.jsonl}}, {{path: {REPO}/data/prompts/code.jsonl}}]", *extra]


def test_the_stopping_rule_by_hand():
    gold, proxy = [0.0, 1.0, 0.5, 0.4], [0.0, 0.1, 0.3, 0.5]
    # best gold at step 1; the last 2 steps: gold 0.45 < 1 − 0.1, proxy 0.4 > 0.1 → stop
    assert gold_decision(gold, proxy, patience=2, min_delta=0.1) == (1, True)
    assert gold_decision(gold, proxy, patience=3, min_delta=0.1) == (1, False)  # only 2 steps since the best
    assert gold_decision(gold, proxy, patience=2, min_delta=0.6) == (1, False)  # 0.45 is not under 1 − 0.6
    assert gold_decision(gold, [0.0, 0.5, 0.3, 0.2], 2, 0.1) == (1, False)  # both fell: no overoptimisation
    assert gold_decision([0.0, 1.0, 1.0], [0, 0, 1], 1, 0.0) == (1, False)  # a tie keeps the first best; not below it
    curve = GoldCurve()
    seen = [curve.observe(s, g, p, GoldStop(patience=2, min_delta=0.1)) for s, g, p in zip([1, 2, 3, 4], gold, proxy)]
    assert seen == [(True, False), (True, False), (False, False), (False, True)] and curve.best_step == 2
    restored = GoldCurve()
    restored.load_state_dict(curve.state_dict())
    assert restored == curve and curve.record(4)["stopped_at"] == 4 and curve.record(4)["best_gold"] == 1.0
    assert GoldCurve().observe(1, 0.0, 0.0, None) == (True, False)  # without gold_stop: never stops


def negated(reward_model: Path, folder: Path) -> Path:
    """A copy of `reward_model` scoring exactly −r: its head's weights and its saved mean negated."""
    shutil.copytree(reward_model, folder)
    (folder / "sanity.json").unlink(missing_ok=True)
    weights = load_file(folder / "model.safetensors")
    weights["score.weight"] = -weights["score.weight"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    meta = json.loads((folder / "reward_config.json").read_text())
    meta["reward_mean"] = -meta["reward_mean"]
    (folder / "reward_config.json").write_text(json.dumps(meta))
    return folder


def lora_weights(state: dict) -> list[torch.Tensor]:
    """The LoRA tensors of an actor checkpoint or an adapter file, in one order."""
    return [state[k] for k in sorted(state, key=lambda k: k.replace("lm.", "").replace(".default", "")) if "lora_" in k]


def test_a_gold_reward_that_falls_while_the_proxy_rises_stops_the_run_and_keeps_the_best(
        tiny_model_dir, tiny_reward_model, tmp_path):
    gold = negated(tiny_reward_model, tmp_path / "gold")
    main(args(tiny_model_dir, tmp_path / "a", "--reward_model", str(tiny_reward_model), "--gold_reward_model", str(gold),
              "--gold_stop", "{patience: 2}", "--steps", "10", "--save_steps", "1", "--save_total_limit", "20"))
    run = tmp_path / "a/tiny"
    rows = read_metrics(run)
    assert 3 <= len(rows) < 10, "stopped early"
    for r in rows:  # the gold is the proxy's opposite, normalised alike
        assert r["gold/score"] == pytest.approx(-r["proxy/score"], abs=1e-4)
        assert r["time/gold"] > 0 and r["time/proxy"] > 0
    record = json.loads((run / "gold.json").read_text())
    best = max(rows, key=lambda r: r["gold/score"])["step"]
    assert record["stopped_at"] == len(rows) and record["best_step"] == best == rows[-1]["gold/best_step"]
    assert record["gold"] == pytest.approx([r["gold/score"] for r in rows])
    assert json.loads((run / "model/gold_best.json").read_text())["step"] == best and not (run / "gold-best").exists()
    final = lora_weights(load_file(run / "model/adapter_model.safetensors"))
    at = {s: lora_weights(torch.load(run / f"checkpoints/step-{s}/actor.pt", weights_only=False)["module"])
          for s in (best, len(rows))}
    assert all(torch.equal(a, b) for a, b in zip(final, at[best])), "the final model is the best-by-gold step's"
    assert not all(torch.equal(a, b) for a, b in zip(final, at[len(rows)])), "not the last step's"

    # without a gold reward nothing changes: the same steps, the same figures
    main(args(tiny_model_dir, tmp_path / "b", "--reward_model", str(tiny_reward_model), "--steps", str(len(rows))))
    plain = read_metrics(tmp_path / "b/tiny")
    assert len(plain) == len(rows) and not (tmp_path / "b/tiny/gold.json").exists()
    assert not any(k.startswith("gold/") for k in plain[-1])
    for a, b in zip(rows, plain):
        for key in ("objective/scores", "objective/kl", "loss/policy_avg", "proxy/score"):
            assert a[key] == pytest.approx(b[key], abs=1e-6), key


def test_an_ensemble_of_a_reward_model_and_its_opposite_by_min_scores_minus_their_spread(
        tiny_model_dir, tiny_reward_model, tmp_path):
    opposite = negated(tiny_reward_model, tmp_path / "opposite")
    main(args(tiny_model_dir, tmp_path, "--reward_model", f"[{tiny_reward_model}, {opposite}]", "--reward_combine", "min",
              "--steps", "2"))
    rows = read_metrics(tmp_path / "tiny")
    # members z and −z: min = −|z|, and their spread (std over the two, divided by 2) = |z|
    assert all(r["proxy/score"] == pytest.approx(-r["proxy/ensemble_std"], abs=1e-5) for r in rows)
    assert all(r["proxy/ensemble_std"] > 0 for r in rows)
    with pytest.raises(ConfigError, match="gold_reward_model shares .* with reward_model"):
        main(args(tiny_model_dir, tmp_path / "c", "--reward_model", f"[{tiny_reward_model}, {opposite}]",
                  "--gold_reward_model", str(opposite)))
    assert not (tmp_path / "c").exists()


def test_a_reward_model_under_the_sanity_floor_is_refused_before_anything_is_written(
        tiny_model_dir, tiny_reward_model, tmp_path):
    flawed = tmp_path / "flawed"
    shutil.copytree(tiny_reward_model, flawed)
    kind = {"low": 0.0, "high": 1.0, "n": 10, "margin": 0.0}
    (flawed / "sanity.json").write_text(json.dumps({"source": "by hand", "prompts": 10, "kinds": {
        "empty": {**kind, "mean": 0.3}, "deflection": {**kind, "mean": 0.95}, "cut": {**kind, "mean": 0.55}}}))
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"reward_sanity_floor 0.8: .*flawed: empty 30%, cut 55% \(pass rates"):
        main(args(tiny_model_dir, out, "--reward_model", str(flawed), "--reward_sanity_floor", "0.8"))
    (flawed / "sanity.json").unlink()  # no figures, and these prompts hold one reference answer: nothing to check by
    with pytest.raises(ConfigError, match="reward_sanity_floor 0.8: reward model .* has no sanity figures"):
        main(args(tiny_model_dir, out, "--reward_model", str(flawed), "--reward_sanity_floor", "0.8"))
    assert not out.exists()
    with pytest.raises(ConfigError, match="gold_stop needs gold_reward_model"):
        main(args(tiny_model_dir, out, "--gold_stop", "{patience: 2}"))


def test_without_a_floor_a_failing_reward_model_is_a_warning_and_its_figures_go_to_the_run(tmp_path, caplog):
    from ppo.sanity import check_reward_sanity

    flawed = tmp_path / "flawed"
    flawed.mkdir()
    kind = {"low": 0.0, "high": 1.0, "n": 10, "margin": 0.0}
    figures = {"source": "by hand", "prompts": 10, "kinds": {"empty": {**kind, "mean": 0.3}, "echo": {**kind, "mean": 0.9}}}
    (flawed / "sanity.json").write_text(json.dumps(figures))
    with caplog.at_level("WARNING", logger="ppo"):
        used = check_reward_sanity(str(flawed), None, [], floor=None)
    assert used == {str(flawed): figures}
    assert "fails its sanity suite" in caplog.text and "empty 30%" in caplog.text and "echo" not in caplog.text
    caplog.clear()
    (flawed / "sanity.json").unlink()  # no figures and no references to run the suite on: said, not refused
    with caplog.at_level("WARNING", logger="ppo"):
        assert check_reward_sanity(str(flawed), None, [], floor=None) == {}
    assert "has no sanity figures" in caplog.text
