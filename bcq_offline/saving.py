"""A trained BCQ model on disk (`<run>/model/`): Q's trainable tensors (the head, and the LoRA
adapters of a separate trunk) in `q.safetensors`, how to rebuild it in `bcq_config.json`
(base model spec, trunk, LoRA shape, τ), and the tokenizer. G is the base model itself."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from bcq_offline.model import BCQModel, build_bcq_model
from common.models import load_model_and_tokenizer
from common.models.lora import LoraSettings
from common.runs import publish
from common.training import base_spec

BCQ_CONFIG = "bcq_config.json"
WEIGHTS = "q.safetensors"


def save_bcq(model: BCQModel, tokenizer, meta: dict, final: Path) -> Path:
    """Write `final` atomically (a temporary folder, then a rename). `meta` needs `base`."""
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    tensors = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(tensors, str(tmp / WEIGHTS))
    tokenizer.save_pretrained(tmp)
    (tmp / BCQ_CONFIG).write_text(json.dumps({**meta, "base": base_spec(meta["base"])}, indent=2))
    publish(tmp, final)
    return final


def load_bcq(folder: str | Path) -> tuple[BCQModel, object, dict]:
    """→ (model, tokenizer, meta) from a folder written by `save_bcq`."""
    folder = Path(folder)
    if not (folder / BCQ_CONFIG).is_file():
        raise FileNotFoundError(f"{folder} is not a BCQ model (no {BCQ_CONFIG}); `make bcq` trains one")
    meta = json.loads((folder / BCQ_CONFIG).read_text())
    lm, tokenizer = load_model_and_tokenizer(meta["base"])
    lora = LoraSettings(**{"dropout": 0.0, **meta.get("lora", {})})
    model = build_bcq_model(lm, meta["q_trunk"], 0.0, lora, meta.get("q_head", "full"))
    tensors = load_file(str(folder / WEIGHTS))
    missing = {n for n, p in model.named_parameters() if p.requires_grad} - set(tensors)
    if missing:
        raise ValueError(f"{folder / WEIGHTS}: missing tensors {sorted(missing)[:3]}…")
    model.load_state_dict(tensors, strict=False)
    model.eval().requires_grad_(False)
    return model, tokenizer, meta


