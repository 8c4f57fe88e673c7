from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from common.config import ConfigError, param, parse_args
from sft.config import SFTStageConfig


@dataclass
class Inner:
    rank: int = param(8, help="r")


@dataclass
class Cfg:
    name: str = param("x", help="a name")
    lr: float = param(1e-3, help="learning rate")
    steps: int = param(10, help="steps")
    flag: bool = param(False, help="a flag")
    mode: Literal["a", "b"] = param("a", help="mode")
    inner: Inner = param(Inner(), help="nested")
    tags: list[str] = param([], help="tags")
    cap: int | None = param(None, help="optional")


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return str(p)


def test_yaml_then_command_line_overrides(tmp_path):
    path = write(tmp_path, "name: base\nlr: 1e-4\ninner:\n  rank: 4\ntags: [a]\n")
    cfg = parse_args(Cfg, ["--config", path, "--steps", "20", "--inner.rank", "16", "--flag=true", "--cap", "3"])
    assert (cfg.name, cfg.lr, cfg.steps, cfg.flag, cfg.inner.rank, cfg.tags, cfg.cap) == (
        "base", 1e-4, 20, True, 16, ["a"], 3,
    )


def test_unknown_key_is_named_with_its_file_and_a_suggestion(tmp_path):
    path = write(tmp_path, "name: a\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError, match=r"r\.yaml: unknown key 'learning_rat'"):
        parse_args(Cfg, ["--config", path])
    with pytest.raises(ConfigError, match=r"unknown key 'inner\.rnak' \(did you mean 'inner\.rank'\?\)"):
        parse_args(Cfg, ["--inner.rnak", "3"])


@pytest.mark.parametrize(
    "args, key",
    [(["--steps", "ten"], "steps"), (["--lr", "fast"], "lr"), (["--flag", "3"], "flag"),
     (["--inner.rank", "1.5"], "inner.rank"), (["--mode", "c"], "mode"), (["--tags", "5"], "tags")],
)
def test_wrong_types_name_the_key(args, key):
    with pytest.raises(ConfigError, match=f"key '{key}'"):
        parse_args(Cfg, args)


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "name: a\nlr: [1,\n")
    with pytest.raises(ConfigError, match=r"r\.yaml:\d+: invalid YAML"):
        parse_args(Cfg, ["--config", path])


def test_missing_value_and_missing_file():
    with pytest.raises(ConfigError, match="--steps needs a value"):
        parse_args(Cfg, ["--steps"])
    with pytest.raises(ConfigError, match="config file not found"):
        parse_args(Cfg, ["--config", "nope.yaml"])


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("recipe", sorted((REPO / "configs/sft").glob("*.yaml")), ids=lambda p: p.name)
def test_every_sft_recipe_parses(recipe, repo):
    cfg = parse_args(SFTStageConfig, ["--config", str(recipe)])
    assert cfg.data, "a recipe without data cannot run"
    if cfg.deepspeed:
        assert (repo / cfg.deepspeed).is_file()


@pytest.mark.parametrize("recipe", sorted((REPO / "configs/reward_model").glob("*.yaml")), ids=lambda p: p.name)
def test_every_reward_model_recipe_parses(recipe):
    from reward_model.config import RMStageConfig

    cfg = parse_args(RMStageConfig, ["--config", str(recipe)])
    assert cfg.data and cfg.output_root == "runs/reward_model"
    if cfg.deepspeed:
        assert (REPO / cfg.deepspeed).is_file()


def test_cluster_recipe_is_full_finetuning_under_zero3(repo):
    cfg = parse_args(SFTStageConfig, ["--config", str(repo / "configs/sft/cluster-qwen3-8b.yaml")])
    assert cfg.finetune == "full" and cfg.deepspeed.endswith("zero3.json") and cfg.precision == "bf16"


def test_validation_in_post_init_is_reported_as_config_error():
    with pytest.raises(ConfigError, match="save_steps must be a multiple of eval_steps"):
        parse_args(SFTStageConfig, ["--early_stopping_patience", "2", "--eval_steps", "3", "--save_steps", "4"])
    with pytest.raises(ConfigError, match="weight must be > 0"):
        parse_args(SFTStageConfig, ["--data", "[{path: a.jsonl, weight: 0}]"])


def test_help_lists_documented_fields(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(SFTStageConfig, ["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--lora.rank" in out and "--hygiene.near_dup_threshold" in out and "adapter rank" in out


@pytest.mark.parametrize("recipe", sorted((REPO / "configs/ppo").glob("*.yaml")), ids=lambda p: p.name)
def test_every_ppo_recipe_parses(recipe):
    from ppo.config import PPOStageConfig

    cfg = parse_args(PPOStageConfig, ["--config", str(recipe)])
    assert cfg.prompts and all((REPO / p.path).is_file() for p in cfg.prompts)


def test_cluster_ppo_recipe_is_zero3_full_finetuning_in_bf16(repo):
    from ppo.config import PPOStageConfig

    cfg = parse_args(PPOStageConfig, ["--config", str(repo / "configs/ppo/cluster-qwen3-8b.yaml")])
    assert cfg.finetune == "full" and cfg.deepspeed.endswith("zero3.json") and cfg.precision == "bf16"
    assert cfg.prompts_per_step % 8 == 0 and cfg.mini_batch_size % 8 == 0  # divisible over 8 GPUs


@pytest.mark.parametrize("recipe", sorted((REPO / "configs/bcq_offline").glob("*.yaml")), ids=lambda p: p.name)
def test_every_bcq_recipe_parses(recipe):
    from bcq_offline.config import BCQStageConfig

    cfg = parse_args(BCQStageConfig, ["--config", str(recipe)])
    assert cfg.data and cfg.output_root == "runs/bcq"


@pytest.mark.parametrize("recipe", sorted((REPO / "configs/evaluation").glob("*.yaml")), ids=lambda p: p.name)
def test_every_evaluation_recipe_parses(recipe):
    from evaluation.config import EvalConfig

    cfg = parse_args(EvalConfig, ["--config", str(recipe)])
    assert cfg.baseline in [p.name for p in cfg.policies] and all((REPO / p.path).is_file() for p in cfg.prompts)
    assert not any("data/prompts" in p.path for p in cfg.prompts)  # held out: never the training prompts


def test_no_training_recipe_reads_the_held_out_prompts():
    for recipe in REPO.glob("configs/*/*.yaml"):
        if recipe.parent.name != "evaluation":
            assert "data/eval" not in recipe.read_text(), recipe


@pytest.mark.parametrize("cls_path", ["ppo.config.PPOStageConfig", "bcq_offline.config.BCQStageConfig",
                                      "sft.config.SFTStageConfig", "reward_model.config.RMStageConfig"])
def test_every_stage_spells_lora_the_same_way_and_old_flat_keys_say_the_new_one(cls_path, tmp_path):
    import importlib

    module, name = cls_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    cfg = parse_args(cls, ["--lora.rank", "4", "--lora.layers", "[1, 2]"])
    assert cfg.lora.rank == 4 and cfg.lora.layers == [1, 2]
    old = tmp_path / "old.yaml"
    old.write_text("lora_rank: 8\n")
    with pytest.raises(ConfigError, match=r"old.yaml: 'lora_rank' is now spelled 'lora.rank'"):
        parse_args(cls, ["--config", str(old)])
