"""What a run's model stands on: the chain of adapters down to full weights, and the run folders
that made each link (their recipes and provenance).

A run's `model/` is a LoRA adapter whose `adapter_config.json` names its base (`base_model_name_or_path`):
another run's model folder (a PPO adapter on the SFT adapter), a built-in spec (`default`) or a hub id.
Following the bases until a folder holds full weights gives the chain, base first:

    chain = resolve_chain("runs/ppo/default")
    chain.base          # Link of the full-weights model (e.g. the default SmolLM2 folder)
    chain.adapters      # [Link(sft adapter), Link(ppo adapter)], applied in this order
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bcq_offline.saving import BCQ_CONFIG
from common.config import ConfigError
from common.models import ADAPTER_CONFIG, ModelNotFoundError, adapter_base, resolve_model
from common.pipeline import FINAL
from common.rewards.scorer import REWARD_CONFIG
from common.tracking.provenance import PROVENANCE_FILE, describe

MAX_DEPTH = 8  # a longer chain is a loop of adapters naming each other


class ExportError(ConfigError):
    """An export that cannot be made as asked: one line naming the thing (a subclass of ConfigError,
    so `common.stage.run_stage` prints it without a traceback)."""


@dataclass
class Link:
    """One model of the chain: its spec as named, the folder it resolves to, and — when the folder is
    a run's `model/` — the run folder with its recipe (config.yaml) and provenance.json."""

    spec: str
    folder: str  # a local folder, or a hub id
    adapter: bool
    run_dir: Path | None = None
    stage: str | None = None
    config: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    def describe(self) -> dict:
        """{"spec", "folder", "adapter", "run", "stage", "sha256", "bytes", "git"} for export.json and the card."""
        out = {"spec": self.spec, "folder": self.folder, "adapter": self.adapter,
               "run": str(self.run_dir) if self.run_dir else None, "stage": self.stage}
        if Path(self.folder).is_dir():
            d = describe(Path(self.folder))
            out.update(sha256=d["sha256"], bytes=d["bytes"])
        out["git"] = self.provenance.get("git")
        return out


@dataclass
class Chain:
    links: list[Link]  # base first, the exported model last

    @property
    def base(self) -> Link:
        return self.links[0]

    @property
    def adapters(self) -> list[Link]:
        return self.links[1:]

    @property
    def top(self) -> Link:
        return self.links[-1]


POLICIES_ONLY = "the export stage ships chat policies (SFT, PPO, GRPO, DPO outputs)"


def refuse_non_policy(folder: Path) -> None:
    """A model folder that is not a chat policy — a BCQ model, a reward model — refused by what it is,
    in one line, before anything is loaded or written."""
    if (folder / BCQ_CONFIG).is_file():
        raise ExportError(f"{folder} is a BCQ model ({BCQ_CONFIG}: a Q-network on its base model, decoded by "
                          f"batch-constrained search), not a causal language model; {POLICIES_ONLY} — decode it with "
                          "`python -m bcq_offline.generate`")
    if (folder / REWARD_CONFIG).is_file():
        raise ExportError(f"{folder} is a reward model ({REWARD_CONFIG}: a sequence classifier that scores replies), "
                          f"not a causal language model; {POLICIES_ONLY}")


def model_folder_of(run: str) -> str:
    """The model spec a `run` value names: a run folder → its model/; anything else as given.

    A run folder without model/ is an unfinished run: refused, naming what to do; so is a BCQ or
    reward model."""
    path = Path(run)
    if path.is_dir():
        refuse_non_policy(path)
    if path.is_dir() and not (path / "config.json").is_file() and not (path / ADAPTER_CONFIG).is_file():
        if (path / FINAL).is_dir():
            refuse_non_policy(path / FINAL)
            return str(path / FINAL)
        if (path / "config.yaml").is_file():
            raise ExportError(f"{run} is not a finished run: it has no {FINAL}/ folder yet (resume or finish the run "
                              "with its stage's command, then export)")
        raise ExportError(f"{run} is neither a run folder (no config.yaml, no {FINAL}/) nor a model folder")
    if not path.exists() and (run.startswith(("runs", ".", "/", "~")) or run.count("/") > 1):
        raise ExportError(f"no run folder at {run} (make it with its stage, e.g. `make ppo`)")
    return run


def _run_of(folder: Path) -> tuple[Path | None, str | None, dict, dict]:
    """The run folder holding a `model/` folder, its stage (the name of its output root by default,
    runs/<stage>/<run>), recipe and provenance; Nones when the folder is not a run's output."""
    if folder.name != FINAL or not (folder.parent / "config.yaml").is_file():
        return None, None, {}, {}
    run_dir = folder.parent
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    prov_path = run_dir / PROVENANCE_FILE
    provenance = json.loads(prov_path.read_text()) if prov_path.is_file() else {}
    return run_dir, run_dir.parent.name, config, provenance


def resolve_chain(run: str) -> Chain:
    """`run` (a run folder, a model folder or a spec) → its chain, base first. Errors name the
    adapter whose base is missing, a run with no model, or a loop."""
    spec = model_folder_of(run)
    links: list[Link] = []
    named_by: str | None = None  # the adapter_config.json that named `spec`
    while True:
        if Path(spec).expanduser().is_dir():  # an adapter on a reward model is no policy either
            refuse_non_policy(Path(spec).expanduser())
        try:
            folder = resolve_model(spec)
        except ModelNotFoundError as err:
            if named_by is None:
                raise ExportError(str(err)) from None
            raise ExportError(f"{named_by}: base_model_name_or_path '{spec}' is missing ({err})") from None
        path = Path(folder)
        base = adapter_base(folder) if path.is_dir() else None
        run_dir, stage, config, provenance = _run_of(path.resolve()) if path.is_dir() else (None, None, {}, {})
        links.append(Link(spec, folder, base is not None, run_dir, stage, config, provenance))
        if base is None:
            break
        if len(links) > MAX_DEPTH:
            raise ExportError(f"{path / ADAPTER_CONFIG}: more than {MAX_DEPTH} adapters deep — do adapters name each other?")
        named_by, spec = str(path / ADAPTER_CONFIG), base
    links.reverse()
    _check_causal_lm(links)
    return Chain(links)


def _check_causal_lm(links: list[Link]) -> None:
    """Only causal language models merge into a chat model: refuse any other architecture or adapter
    (a classifier without its reward_config.json, say) with its reason, before anything is loaded."""
    base = Path(links[0].folder)
    if (base / "config.json").is_file():
        arch = (json.loads((base / "config.json").read_text()).get("architectures") or ["?"])[0]
        if not arch.endswith("ForCausalLM"):
            raise ExportError(f"{base}/config.json: {arch} is not a causal language model; the export stage ships "
                              "chat policies (SFT, PPO, GRPO, DPO outputs)")
    for link in links[1:]:
        cfg = json.loads((Path(link.folder) / ADAPTER_CONFIG).read_text())
        if cfg.get("peft_type") != "LORA" or cfg.get("task_type") not in (None, "CAUSAL_LM") or cfg.get("modules_to_save"):
            raise ExportError(f"{link.folder}/{ADAPTER_CONFIG}: only LoRA adapters of a causal LM merge here "
                              f"(peft_type {cfg.get('peft_type')}, task_type {cfg.get('task_type')}, "
                              f"modules_to_save {cfg.get('modules_to_save')})")
