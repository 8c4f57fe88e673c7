"""Run folders the export stage reads, made in seconds: an SFT run whose model is a LoRA adapter on the
tiny model, and a PPO run whose adapter sits on that SFT model — each with its real stage's resolved
config.yaml and provenance.json (common.runs.open_run_dir), as the stages leave them — and a
hand-written evaluation report of the PPO model whose figures the card must show."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from helpers.stages import REPO


def lora_adapter(base_spec: str, folder: Path, seed: int) -> Path:
    """A LoRA adapter on `base_spec` (merged if it is itself an adapter) with random A and B, so it
    moves the model's log-probs well beyond any dtype's rounding; its config names `base_spec`."""
    from peft import LoraConfig, get_peft_model

    from common.models import load_model_and_tokenizer

    base, tokenizer = load_model_and_tokenizer(base_spec)
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.mul_(4.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    meta = json.loads((folder / "adapter_config.json").read_text())
    meta["base_model_name_or_path"] = base_spec
    (folder / "adapter_config.json").write_text(json.dumps(meta))
    return folder


def run_folder(stage_config, recipe: str, root: Path, overrides: list[str], base_spec: str, seed: int) -> Path:
    """`<root>/<stage>/<run>/` with config.yaml, provenance.json and a model/ adapter on `base_spec`."""
    from common.config import parse_args
    from common.runs import open_run_dir

    cfg = parse_args(stage_config, ["--config", str(REPO / recipe), "--trackers", "[]", *overrides])
    run_dir = Path(cfg.output_root) / cfg.run_name
    open_run_dir(run_dir, cfg)
    lora_adapter(base_spec, run_dir / "model", seed)
    return run_dir


def sft_and_ppo_runs(tiny_model_dir: Path, root: Path) -> tuple[Path, Path]:
    from ppo.config import PPOStageConfig
    from sft.config import SFTStageConfig

    sft = run_folder(SFTStageConfig, "configs/sft/tiny.yaml", root,
                     ["--model", str(tiny_model_dir), "--output_root", str(root / "sft"),
                      "--data", f"[{{path: {REPO / 'data/samples/sft_chat.jsonl'}}}]"], str(tiny_model_dir), seed=1)
    ppo = run_folder(PPOStageConfig, "configs/ppo/tiny.yaml", root,
                     ["--policy", str(sft / "model"), "--output_root", str(root / "ppo"),
                      "--prompts", f"[{{path: {REPO / 'data/prompts/general.jsonl'}}}]"], str(sft / "model"), seed=2)
    return sft, ppo


def ci(mean: float, low: float, high: float, n: int = 8) -> dict:
    return {"mean": mean, "low": low, "high": high, "n": n}


def evaluation_report(policy_model: Path, baseline_model: Path) -> dict:
    """An evaluation.json in the evaluation stage's shape: the PPO model against SFT, its
    length-controlled win-rate withheld, instruction-following figures and a hollow-policy warning."""
    policy = {"model": str(policy_model), "replies": 16, "length": ci(18.25, 15.5, 21.0), "eos_rate": ci(0.875, 0.75, 1.0),
              "empty_rate": 0.0, "reward_model": ci(-0.3512, -0.4203, -0.2718), "mixed_reward": ci(0.1234, 0.05, 0.2),
              "kl": ci(5.0625, 4.3811, 5.7907)}
    base = {**policy, "model": str(baseline_model), "kl": ci(0.0, 0.0, 0.0), "reward_model": ci(-0.79, -0.84, -0.73)}
    follows = {"prompt_strict": ci(0.4167, 0.25, 0.5833), "prompt_loose": ci(0.5, 0.3333, 0.6667),
               "constraint_strict": ci(0.55, 0.4, 0.7), "constraint_loose": ci(0.6, 0.45, 0.75), "prompts": 12,
               "subsets": {}}
    return {
        "status": "complete", "run_name": "ppo-vs-sft", "eval_id": "abc123def456", "baseline": "sft",
        "prompts": {"total": 60, "by_domain": {"general": 60}},
        "policies": {"sft": base, "ppo": policy},
        "comparisons": {"ppo": {
            "pairs": 120, "win_rate": {**ci(0.7833, 0.7, 0.8583), "pairs": 120},
            "lc_win_rate": {"mean": None, "low": None, "high": None,
                            "withheld": "the length differences never reach 0: the policy is always shorter"},
            "mixed_win_rate": {**ci(0.6125, 0.52, 0.7), "pairs": 120}}},
        "warnings": ["ppo's win comes with signs of a hollow policy: 41% of its replies duplicate another "
                     "(sft: 2%); read its replies before believing the win"],
        "instructions": {"policies": {"ppo": follows, "sft": follows}, "comparisons": {}},
        "kl_reference": str(baseline_model),
        "config": {"policies": [{"name": "sft", "model": str(baseline_model)}, {"name": "ppo", "model": str(policy_model)}],
                   "baseline": "sft", "samples_per_prompt": 2, "reward_model": "runs/reward_model/default/model",
                   "prompts": [{"path": "data/eval/general.jsonl"}]},
    }
