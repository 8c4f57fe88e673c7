"""The export stage's options: one dataclass, filled from `configs/export/*.yaml` + command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from common.config import param
from common.pipeline import RUNS, run_folder
from common.runs import RunOptions
from export.kinds import KINDS

DTYPES = ("fp32", "bf16", "fp16")


def kinds_help() -> str:
    """The `kinds` help line, from the registry: every registered kind, and what the starred ones need."""
    names = ", ".join(name + ("*" if kind.needs else "") for name, kind in KINDS.items())
    needs = dict.fromkeys(kind.needs for kind in KINDS.values() if kind.needs)
    return f"further export kinds (export/kinds.py): {names}" + "".join(f"; * needs {module}: {how}" for module, how in needs)


@dataclass
class ExportConfig(RunOptions):
    """Ship a finished run's model: the adapter chain (PPO adapter → SFT adapter → base) merged into
    one standard Hugging Face folder in the chosen dtype, verified against the unmerged chain, with
    a model card generated from the run folders and their evaluation, optional GGUF files for
    llama.cpp and Ollama (or any registered export kind: `export/kinds.py`), and an optional push
    to the Hugging Face Hub.

    The export is written to `<output_root>/<run_name>.tmp/` and renamed when whole; checkpoints,
    resume, trackers and DeepSpeed do not apply.
    """

    output_root: str = param("runs/export", help="parent folder of export folders")
    run_name: str = param("", help="export folder name under output_root; '' = <stage>-<run> of `run` (ppo-default)")

    # --- what is exported
    run: str = param(str(run_folder("ppo")), help="a finished run folder (runs/ppo/default), its model/ folder, or a "
                     "model spec (default, a hub id); an adapter's base chain is followed to full weights")
    dtype: Literal["fp32", "bf16", "fp16"] = param("bf16", help="dtype of the merged weights written")
    device: Literal["auto", "cpu", "cuda"] = param("auto", help="where merging and verification run; auto = cuda "
                                                   "when there is one")
    max_shard_size: str = param("2GB", help="largest safetensors shard (transformers' max_shard_size)")

    # --- verification: the merged folder, loaded by plain transformers, against the unmerged chain
    verify_prompts: str = param("data/prompts/general.jsonl", help="prompts ({prompt} rows) the log-probs "
                                "are compared on")
    verify_count: int = param(4, help="prompts used for the comparison (the first N rows)")
    verify_new_tokens: int = param(16, help="greedy tokens the unmerged chain adds to each prompt before scoring")
    tolerance: float | None = param(None, help="largest |Δ log p| per token allowed between the merged export and "
                                    "the unmerged chain; None = by dtype (fp32 1e-4, bf16 and fp16: export/verify.py)")

    # --- other formats
    kinds: list[str] = param([], help=kinds_help())

    # --- the model card
    eval_run: str | None = param(None, help="the evaluation to cite: a runs/evaluation/<name> folder or its eval.json; "
                                 "None = the newest under evaluations_root that judged this model")
    evaluations_root: str = param(f"{RUNS}/evaluation", help="where to look for that evaluation")
    license: str | None = param(None, help="the card's licence (a Hub licence id); None = the base model's, where "
                                "its files say it")
    language: list[str] = param(["en", "zh"], help="languages of the card's metadata")

    # --- the Hub
    push_to_hub: str | None = param(None, help="upload the finished, verified export to this Hub repo (user/name); "
                                    "the token comes from $HF_TOKEN (or `hf auth login`)")
    hub_endpoint: str | None = param(None, help="Hub address; None = $HF_ENDPOINT, else huggingface.co")
    private: bool = param(True, help="create the Hub repo private")

    def __post_init__(self):
        if self.verify_count < 1 or self.verify_new_tokens < 0:
            raise ValueError("verify_count must be ≥ 1 and verify_new_tokens ≥ 0")
        if self.tolerance is not None and self.tolerance < 0:
            raise ValueError(f"tolerance must be ≥ 0, got {self.tolerance}")
        if self.push_to_hub is not None and self.push_to_hub.count("/") != 1:
            raise ValueError(f"push_to_hub: a Hub repo is 'user/name', got {self.push_to_hub!r}")
        if not self.run_name:
            self.run_name = default_name(self.run)


def default_name(run: str) -> str:
    """`runs/ppo/default` (or its model/) → `ppo-default`; a spec such as `default` names itself."""
    path = Path(run.rstrip("/"))
    if path.name == "model":
        path = path.parent
    parts = [p for p in path.parts if p not in (".", "..", "/")]
    return "-".join(parts[-2:]).replace(" ", "_") or "model"
