"""Reward-model ensembles: the combinations by hand, members normalised by their own statistics,
bootstrap resamples by group, `ensemble: n` in the reward-model stage, and the ensemble folder in
the closed loop's task selection."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch

from common.data.preferences import PreferenceGroup
from common.rewards.ensemble import EnsembleScorer, combine_rewards, load_reward_models, member_folders
from common.rewards.scorer import load_reward_scorer
from common.runs import RunExistsError
from reward_model.__main__ import main
from reward_model.ensemble import bootstrap_groups, member_starts, pair_set_hash

from helpers.stages import REPO

TINY = str(REPO / "configs/reward_model/tiny.yaml")
SAMPLES = str(REPO / "data/samples/preferences.jsonl")


def test_the_three_combinations_by_hand():
    scores = torch.tensor([[1.0, -1.0], [2.0, 0.0], [3.0, 4.0]])  # (M = 3 members, B = 2 replies)
    assert combine_rewards(scores, "mean").tolist() == pytest.approx([2.0, 1.0])
    assert combine_rewards(scores, "min").tolist() == [1.0, -1.0]
    # std over members, divided by M: reply 0 → √(2/3) = 0.8165; reply 1 → deviations −2, −1, 3: √(14/3) = 2.1602
    assert combine_rewards(scores, "mean_minus_std").tolist() == pytest.approx([2 - 0.81650, 1 - 2.16025], abs=1e-4)
    assert combine_rewards(scores, "mean_minus_std", coef=0.5).tolist() == pytest.approx([1.59175, -0.08012], abs=1e-4)
    assert combine_rewards(scores[:1], "mean_minus_std").tolist() == [1.0, -1.0]  # one member: no disagreement
    with pytest.raises(ValueError, match="reward_combine must be one of mean, min, mean_minus_std"):
        combine_rewards(scores, "median")


class Member:
    """A hand-made reward model: fixed raw scores and saved statistics, the `RewardScorer` interface."""

    def __init__(self, raw: list[float], mean: float, std: float):
        self.raw, self.mean, self.std = torch.tensor(raw), mean, std

    def __call__(self, prompts, responses, batch_size=8, normalize=False):
        return (self.raw - self.mean) / self.std if normalize else self.raw


def test_each_member_is_normalised_by_its_own_statistics_before_combining():
    a, b = Member([10.0, 20.0], mean=10.0, std=10.0), Member([-1.0, 1.0], mean=0.0, std=0.5)  # → [0, 1] and [−2, 2]
    ensemble = EnsembleScorer([a, b], "mean")
    assert ensemble(["q", "q"], ["x", "y"]).tolist() == [-1.0, 1.5]
    assert ensemble.last_members.tolist() == [[0.0, 1.0], [-2.0, 2.0]]
    assert EnsembleScorer([a, b], "min")(["q", "q"], ["x", "y"]).tolist() == [-2.0, 1.0]
    assert ensemble(["q", "q"], ["x", "y"], normalize=True).tolist() == [-1.0, 1.5]  # always on the normalised scale


def groups(n: int) -> list[PreferenceGroup]:
    return [PreferenceGroup([{"role": "user", "content": f"q{i}"}], [f"a{i}", f"b{i}"], [1, 2]) for i in range(n)]


def test_bootstrap_resamples_draw_whole_groups_with_replacement():
    pool = groups(50)
    first, again, second = bootstrap_groups(pool, "42:0"), bootstrap_groups(pool, "42:0"), bootstrap_groups(pool, "42:1")
    assert len(first) == len(second) == 50 and all(g in pool for g in first + second)
    assert first == again  # seeded
    assert len({id(g) for g in first}) < 50  # with replacement: some groups twice, some not at all (≈ 63% kept)
    assert pair_set_hash(first) != pair_set_hash(second)
    assert pair_set_hash(first) == pair_set_hash(list(reversed(first)))  # a multiset: the order does not count
    assert pair_set_hash(pool) != pair_set_hash(pool + pool[:1])  # a repeat counts


@pytest.fixture(scope="module")
def ensemble_run(tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rm-ensemble")
    main(["--config", TINY, "--model", str(tiny_model_dir), "--output_root", str(out), "--data", f"[{{path: {SAMPLES}}}]",
          "--ensemble", "2", "--max_steps", "4", "--trackers", "[]"])
    return out / "tiny"


def test_ensemble_members_train_on_different_pairs_and_each_loads_as_a_reward_model(ensemble_run, tiny_model_dir):
    summaries = [json.loads((ensemble_run / f"member-{i}/summary.json").read_text()) for i in range(2)]
    hashes = [s["train_pairs_hash"] for s in summaries]
    assert hashes[0] != hashes[1], "members differ by their data"
    assert all(s["distinct_train_groups"] < s["train_groups"] for s in summaries)
    folders = member_folders(str(ensemble_run / "model"))
    assert [Path(f).resolve() for f in folders] == [(ensemble_run / f"member-{i}/model").resolve() for i in range(2)]
    scores = [load_reward_scorer(f)(["What is 2 plus 2?"], ["4."]) for f in folders]
    assert all(torch.isfinite(s).all() for s in scores) and scores[0].item() != scores[1].item()
    assert all((Path(f) / "sanity.json").is_file() for f in folders)
    meta = json.loads((ensemble_run / "model/ensemble.json").read_text())
    assert meta["train_pairs_hashes"] == hashes
    ensemble = load_reward_models(str(ensemble_run / "model"), "min")
    assert isinstance(ensemble, EnsembleScorer) and len(ensemble.members) == 2
    combined = ensemble(["What is 2 plus 2?"], ["4."])
    assert combined.item() == pytest.approx(min(s(["What is 2 plus 2?"], ["4."], normalize=True).item()
                                                for s in ensemble.members))
    assert json.loads((ensemble_run / "model/sanity.json").read_text())["combine"] == "mean"
    with pytest.raises(RunExistsError, match="already holds a finished"):  # a finished ensemble is a finished run
        main(["--config", TINY, "--model", str(tiny_model_dir), "--output_root", str(ensemble_run.parent),
              "--data", f"[{{path: {SAMPLES}}}]", "--ensemble", "2"])


def test_an_ensemble_folder_as_the_model_continues_member_by_member(ensemble_run):
    from common.config import ConfigError, parse_args
    from reward_model.config import RMStageConfig

    cfg = parse_args(RMStageConfig, ["--config", TINY, "--model", str(ensemble_run / "model"), "--ensemble", "2"])
    assert member_starts(cfg) == member_folders(str(ensemble_run / "model"))
    with pytest.raises(ConfigError, match="is an ensemble of 2 members but ensemble is 3"):
        member_starts(parse_args(RMStageConfig, ["--config", TINY, "--model", str(ensemble_run / "model"),
                                                 "--ensemble", "3"]))


def test_the_loop_selects_by_the_disagreement_of_an_ensemble_folder(ensemble_run, tiny_reward_model):
    from annotation_ui.tasks import check_selection
    from common.data import DataError

    check_selection("ensemble", 2, [str(ensemble_run / "model")], 10, "prompts.jsonl")
    with pytest.raises(DataError, match="--select ensemble needs ≥ 2 reward models"):
        check_selection("ensemble", 2, [str(tiny_reward_model)], 10, "prompts.jsonl")


def test_make_rm_passes_ensemble():
    out = subprocess.run(["make", "-n", "rm", "ENSEMBLE=3", "VENV=/nonexistent"], cwd=REPO, capture_output=True,
                         text=True).stdout
    assert "-m reward_model --config configs/reward_model/default.yaml" in out and "--ensemble 3" in out
