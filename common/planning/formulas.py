"""Pre-flight memory planner: what one rank of a stage will hold, from configs alone.

The formulas (docs/memory-planner.md has their sources and limits), per rank of N, in bytes:

    model states   Ψ parameters of which T train.
      plain PyTorch (no DeepSpeed; what every stage runs on one device): weights stay as loaded
      (fp32: 4Ψ), the trained ones add fp32 gradients and AdamW's two moments: 4Ψ + 12T.
      DeepSpeed with bf16 (ZeRO paper, 2Ψ + 2Ψ + 12Ψ; the constants of DeepSpeed's own
      estimate_zero{2,3}_model_states_mem_needs): bf16 weights 2Ψ, bf16 gradients 2T, fp32
      gradients 4T, fp32 master copy 4T and moments 8T:
        ZeRO-0   2Ψ + 18T           ZeRO-1   2Ψ + 2T + 16T/N        ZeRO-2   2Ψ + 18T/N
        ZeRO-3   2Ψ/N + 18T/N + 4·(largest tensor), gathered in flight (DeepSpeed's estimate
                 leaves out the 2Ψ/N bf16 partition; we count it)
      offload_optimizer moves the 16T/N part to CPU memory; offload_param moves ZeRO-3's
      weights too. Frozen models (reference, reward model): their weights only — fp32 as
      loaded, or bf16 and partitioned /N under ZeRO-3 (DeepSpeed inference engines).
    activations    of the layers that need gradients (a LoRA adapter on layers ≥ k stores
      nothing below k), per micro-batch of b sequences of s tokens, a bytes an element (2 in
      bf16, 4 in fp32):  b·s·(L − k)·a·(6h + 2·kv + 4·I)  — the inputs of the norms and
      projections, q/k/v, the attention output, SwiGLU's gate, up and product — or with
      gradient checkpointing b·s·(L − k)·a·h plus one layer's worth.
    logits         b·s'·V·(2a + 12): the head's output, its fp32 copy, the saved log-softmax and,
      in the backward pass, their gradients (+8 where an entropy is computed over them), on the
      s' positions whose log-probabilities the loss needs.
    KV cache       2·L·kv·d·B·(prompt + new)·w for generating B replies (w: weight bytes).
    QLoRA          (finetune: qlora) the frozen decoder Linears in NF4: 0.5 + 1/64 + 4/(64·256) bytes a
      weight with double quantization; the rest (embeddings, norms, head) fp32 (bf16 under
      DeepSpeed) plus one Linear dequantized for its matmul; the adapters as under LoRA.

The peak of a stage is its resident model states plus the larger of its phases (generation
or training). `plan_stage` builds the table for any stage's parsed config.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

GiB = 2**30
REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIGS = REPO / "configs" / "models"  # config.json of hub models, for planning without the hub


class PlanError(ValueError):
    """Input the planner cannot plan from; the message names what and where."""


# ----------------------------------------------------------------------------- architectures


@dataclass(frozen=True)
class Arch:
    """What memory depends on in a decoder-only model, read from its config.json."""

    source: str  # where the config came from
    params: int  # causal LM, exact (counted on the meta device)
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    lm_head: int  # parameters of an untied LM head (0 when tied to the embeddings)
    largest_layer: int  # parameters of the largest single module (ZeRO-3 gathers one at a time)
    linears: tuple[tuple[int, str, int, int], ...]  # (layer index or -1, module name, in, out) of every Linear

    @property
    def classifier_params(self) -> int:
        """The same backbone with a scalar head (reward model, critic) instead of the LM head."""
        return self.params - self.lm_head + self.hidden

    def lora_params(self, rank: int, targets: list[str], layers: list[int] | None) -> int:
        """Adapter parameters: r·(in + out) per adapted Linear."""
        every = targets == ["all-linear"]
        return sum(rank * (i + o) for layer, name, i, o in self.linears
                   if layer >= 0 and (every or name in targets) and (layers is None or layer in layers))


def _layer_and_name(qualified: str) -> tuple[int, str]:
    parts = qualified.split(".")
    for i, p in enumerate(parts[:-1]):
        if p == "layers" and parts[i + 1].isdigit():
            return int(parts[i + 1]), parts[-1]
    return -1, parts[-1]


def arch_from_config_dir(folder: Path, source: str) -> Arch:
    """The architecture of a folder's config.json."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(folder)
    except Exception as e:  # noqa: BLE001 — a config transformers cannot read: one clear line
        raise PlanError(f"{source}: {folder}/config.json cannot be read as a model config ({e})") from None
    return arch_from_config(config, source)


def arch_from_gguf(path: Path, source: str) -> Arch:
    """The architecture of a GGUF file, from its metadata (transformers' GGUF reader; no tensors read)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    except Exception as e:  # noqa: BLE001 — a file transformers cannot read: one clear line
        raise PlanError(f"{source}: {path} cannot be read as a GGUF model ({str(e).splitlines()[0]})") from None
    return arch_from_config(config, source)


def arch_from_config(config, source: str) -> Arch:
    """Count a config's parameters on PyTorch's meta device: exact for any architecture, no weights."""
    import torch
    from transformers import AutoModelForCausalLM

    for key in ("quantization_config",):
        if hasattr(config, key):
            delattr(config, key)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    params = sum(p.numel() for p in model.parameters())
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is model.get_input_embeddings().weight
    linears = tuple((*_layer_and_name(n), m.in_features, m.out_features)
                    for n, m in model.named_modules() if isinstance(m, torch.nn.Linear))
    largest = max(p.numel() for p in model.parameters())
    text = getattr(config, "text_config", None) or config
    heads = text.num_attention_heads
    return Arch(
        source=source, params=params, hidden=text.hidden_size, layers=text.num_hidden_layers, heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=getattr(text, "head_dim", None) or text.hidden_size // heads,
        intermediate=getattr(text, "intermediate_size", None) or 4 * text.hidden_size, vocab=text.vocab_size,
        lm_head=0 if tied or head is None else head.weight.numel(), largest_layer=largest, linears=linears,
    )


def _recipe_output(spec: str) -> str | None:
    """`runs/<stage>/<name>/model` that does not exist yet: the model spec of the recipe that makes it."""
    parts = Path(spec).parts
    if len(parts) != 4 or parts[0] != "runs" or parts[3] != "model":
        return None
    from common.config import load_yaml

    folder = {"bcq": "bcq_offline"}.get(parts[1], parts[1])
    for recipe in sorted((REPO / "configs" / folder).glob("*.yaml")):
        data = load_yaml(recipe)
        if data.get("run_name", "default") == parts[2]:
            base = data.get("policy") or data.get("model")
            if base:
                return str(base)
    return None


def resolve_arch(spec: str, field_name: str, _seen: tuple[str, ...] = ()) -> Arch:
    """The architecture behind a model spec, with no weights loaded: a local folder's config.json,
    a LoRA adapter's base, a GGUF file's metadata, a run folder not made yet (through the recipe that
    makes it), a hub id in the local Hugging Face cache or in `configs/models/<org>/<name>/`."""
    from common.models import ADAPTER_CONFIG, ALIASES, DEFAULT_MODEL, TINY_MODEL, is_gguf_file

    if spec in _seen:
        raise PlanError(f"{field_name}: model spec '{spec}' refers to itself through recipes")
    name = ALIASES.get(spec, spec)
    if name in (DEFAULT_MODEL, TINY_MODEL):
        from common.models import resolve_model

        return arch_from_config_dir(Path(resolve_model(name)), spec)
    path = Path(spec).expanduser()
    if is_gguf_file(path):
        return arch_from_gguf(path, spec)
    if path.is_dir():
        from common.rewards.ensemble import ENSEMBLE_FILE, member_folders

        if (path / ENSEMBLE_FILE).is_file():  # a reward-model ensemble: its members share the first's shape
            return resolve_arch(member_folders(spec)[0], field_name, (*_seen, spec))
        if (path / "config.json").is_file():
            return arch_from_config_dir(path, spec)
        if (path / ADAPTER_CONFIG).is_file():
            base = json.loads((path / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
            return resolve_arch(base, field_name, (*_seen, spec))
        raise PlanError(f"{field_name}: {spec} has neither config.json nor {ADAPTER_CONFIG}")
    made_by = _recipe_output(spec)
    if made_by:
        return resolve_arch(made_by, field_name, (*_seen, spec))
    shipped = SHIPPED_CONFIGS / spec
    if (shipped / "config.json").is_file():
        return arch_from_config_dir(shipped, spec)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec, "config.json")
    except Exception:  # noqa: BLE001 — not a valid repo id: fall through to the clear error
        cached = None
    if isinstance(cached, str):
        return arch_from_config_dir(Path(cached).parent, spec)
    raise PlanError(
        f"{field_name}: no config.json for model '{spec}' — not a folder, not made by a recipe in configs/, not in "
        f"the Hugging Face cache nor in {SHIPPED_CONFIGS.relative_to(REPO)}/ (download its config.json there, or run "
        "`huggingface-cli download <id> config.json` on a machine with the hub)"
    )


# ----------------------------------------------------------------------------- distribution


@dataclass(frozen=True)
class Setup:
    """How the stage runs: ranks, DeepSpeed, precision, device memory."""

    world: int = 1
    zero: int | None = None  # None = no DeepSpeed
    offload_optimizer: bool = False
    offload_param: bool = False
    bf16: bool = False  # activations (autocast or DeepSpeed bf16)
    device_gb: float | None = None  # memory of one device, GiB
    device: str = "cuda"  # cuda | cpu

    @property
    def act_bytes(self) -> int:
        """Bytes per saved activation element. bf16 only where the weights themselves are bf16
        (DeepSpeed bf16). Under autocast (no DeepSpeed) the weights stay fp32, and so do the residual
        stream and the norms' saved inputs, while the bf16 casts of each matmul's input are saved
        beside them: measured on the CPU (bench/plan_accuracy.py), a trained layer then holds about
        as much as in fp32 (the reward model's step: 43 KB per layer-token; the fp32 figure is 40),
        not half."""
        return 2 if self.bf16 and self.zero is not None else 4

    @property
    def out_bytes(self) -> int:
        """Bytes per element of a layer's output (the LM head's logits): bf16 under autocast too."""
        return 2 if self.bf16 else 4


def setup_from(ds_path: str | None, precision: str, world: int, device_gb: float | None, device: str = "cuda") -> Setup:
    """A Setup from a DeepSpeed JSON, the recipe's precision and the launch's size."""
    zero = offload_opt = offload_par = None
    if ds_path:
        path = Path(ds_path) if Path(ds_path).is_file() else REPO / ds_path
        try:
            ds = json.loads(path.read_text())
        except FileNotFoundError:
            raise PlanError(f"deepspeed: {ds_path} not found") from None
        except json.JSONDecodeError as e:
            raise PlanError(f"deepspeed: {ds_path} line {e.lineno}: not JSON ({e.msg})") from None
        z = ds.get("zero_optimization", {})
        zero = int(z.get("stage", 0))
        offload_opt = z.get("offload_optimizer", {}).get("device", "none") in ("cpu", "nvme")
        offload_par = z.get("offload_param", {}).get("device", "none") in ("cpu", "nvme")
    if precision == "auto":
        bf16 = device == "cuda" or _cpu_bf16()
    else:
        bf16 = precision == "bf16"
    return Setup(world=world, zero=zero, offload_optimizer=bool(offload_opt), offload_param=bool(offload_par),
                 bf16=bf16, device_gb=device_gb, device=device)


def _cpu_bf16() -> bool:
    from common.models.precision import resolve_precision

    return resolve_precision("auto") == "bf16"


# ----------------------------------------------------------------------------- one model's states


@dataclass
class Row:
    """One line of the plan: a model (or a phase) and its bytes on one rank."""

    name: str
    params: int = 0
    trainable: int = 0
    weights: float = 0.0
    grads: float = 0.0
    optimizer: float = 0.0
    activations: float = 0.0
    kv_cache: float = 0.0
    note: str = ""

    @property
    def total(self) -> float:
        return self.weights + self.grads + self.optimizer + self.activations + self.kv_cache


def model_states(name: str, params: int, trainable: int, setup: Setup, largest_layer: int = 0) -> Row:
    """Weights, gradients and optimizer states of one model on one rank (formulas in the module doc)."""
    n, t = setup.world, trainable
    if setup.zero is None:
        return Row(name, params, t, weights=4 * params, grads=4 * t, optimizer=8 * t,
                   note="fp32 weights (plain PyTorch)" if t else "frozen")
    if t == 0:  # frozen: an inference module (ZeRO-3: a partitioned bf16 engine; else as loaded)
        if setup.zero == 3:
            return Row(name, params, 0, weights=(0 if setup.offload_param else 2 * params / n) + 4 * largest_layer,
                       note="frozen, ZeRO-3 partitioned")
        return Row(name, params, 0, weights=4 * params, note="frozen, fp32 as loaded")
    # DeepSpeed's estimate_zero{2,3}_model_states_mem_needs: 2Ψ bf16 weights + 18T/N, where 18 = bf16 grads 2
    # + fp32 grads 4 + fp32 master 4 + moments 8; ZeRO-3 adds 4× the largest tensor (gathered in flight)
    # and — not in DeepSpeed's estimate — the 2Ψ/N bf16 weight partition itself
    grad_div = n if setup.zero >= 2 else 1
    opt_div = n if setup.zero >= 1 else 1
    grads = 0.0 if setup.offload_optimizer else 2 * t / grad_div
    optimizer = 0.0 if setup.offload_optimizer else 16 * t / opt_div
    if setup.zero == 3:
        weights = (0 if setup.offload_param else 2 * params / n) + 4 * largest_layer
    else:
        weights = 2 * params
    return Row(name, params, t, weights=weights, grads=grads, optimizer=optimizer,
               note=f"ZeRO-{setup.zero}" + (", optimizer offloaded" if setup.offload_optimizer else "")
               + (", weights offloaded" if setup.offload_param and setup.zero == 3 else ""))


# ----------------------------------------------------------------------------- activations, logits, KV cache


def activation_bytes(arch: Arch, sequences: int, tokens: int, first_trained_layer: int, setup: Setup,
                     checkpointing: bool = False) -> float:
    """Saved activations of the layers that need gradients, for `sequences` × `tokens`."""
    a, h = setup.act_bytes, arch.hidden
    trained_layers = max(0, arch.layers - first_trained_layer)
    kv = arch.kv_heads * arch.head_dim
    per_layer_token = a * (6 * h + 2 * kv + 4 * arch.intermediate)
    if checkpointing:
        return sequences * tokens * (trained_layers * a * h + per_layer_token)
    return sequences * tokens * trained_layers * per_layer_token


def logits_bytes(arch: Arch, sequences: int, positions: int, setup: Setup, grad: bool = True,
                 entropy: bool = False, lean: bool = False) -> float:
    """The head's logits over `positions` per sequence. Training: their output (a), an fp32 copy and
    the saved log-softmax (4 + 4), and in the backward pass their gradients in fp32 and in the
    output's dtype (4 + a) — 2a + 12 bytes an element; `entropy` (a loss term or a logged figure
    over the whole distribution: softmax and its product with the log-probs) adds 8. Without
    gradients: the output, its fp32 copy when the output is bf16 (`.float()` of fp32 is the same
    tensor) and the log-softmax — a + 8 in bf16, 8 in fp32; `lean` (common.models.generate's
    response_logprobs, which frees the output before the log-softmax) 8 either way."""
    a = setup.out_bytes
    if grad:
        per = 2 * a + 12 + (8 if entropy else 0)
    else:
        per = 8 if lean or a == 4 else a + 8
    return sequences * positions * arch.vocab * per


def decode_bytes(setup: Setup) -> int:
    """Bytes per KV-cache element: bf16 on a GPU in bf16 (autocast or DeepSpeed); a CPU decodes in the
    weights' dtype (fp32: autocast decodes slower there, so the stages turn it off)."""
    return 2 if setup.bf16 and (setup.device == "cuda" or setup.zero is not None) else 4


def kv_cache_bytes(arch: Arch, sequences: int, tokens: int, weight_bytes: int) -> float:
    return 2 * arch.layers * arch.kv_heads * arch.head_dim * sequences * tokens * weight_bytes


# ----------------------------------------------------------------------------- a plan


@dataclass
class Plan:
    stage: str
    setup: Setup
    rows: list[Row] = field(default_factory=list)  # resident models
    phases: dict[str, list[Row]] = field(default_factory=dict)  # transient: the peak is the largest phase
    notes: list[str] = field(default_factory=list)

    @property
    def resident(self) -> float:
        return sum(r.total for r in self.rows)

    @property
    def peak_phase(self) -> tuple[str, float]:
        if not self.phases:
            return "", 0.0
        name = max(self.phases, key=lambda k: sum(r.total for r in self.phases[k]))
        return name, sum(r.total for r in self.phases[name])

    @property
    def total(self) -> float:
        return self.resident + self.peak_phase[1]

    def fits(self, margin: float = 0.9) -> bool | None:
        """None when the device memory is unknown."""
        if not self.setup.device_gb:
            return None
        return self.total <= margin * self.setup.device_gb * GiB

    def table(self) -> str:
        def gb(x: float) -> str:
            return f"{x / GiB:8.2f}" if x else "       -"

        lines = [f"{'per rank (GiB)':<34}{'params':>9}{'trained':>9}{'weights':>9}{'grads':>9}{'optim':>9}"
                 f"{'activ.':>9}{'KV':>9}{'total':>9}  note"]
        for r in self.rows:
            lines.append(f"{r.name:<34}{_count(r.params):>9}{_count(r.trainable):>9}{gb(r.weights)} {gb(r.grads)} "
                         f"{gb(r.optimizer)} {gb(r.activations)} {gb(r.kv_cache)} {gb(r.total)}  {r.note}")
        peak_name, _ = self.peak_phase
        for phase, rows in self.phases.items():
            for r in rows:
                mark = "*" if phase == peak_name and len(self.phases) > 1 else " "
                label = f"{mark}{phase}: {r.name}"
                lines.append(f"{label:<34}{_count(r.params):>9}{_count(r.trainable):>9}{gb(r.weights)} {gb(r.grads)} "
                             f"{gb(r.optimizer)} {gb(r.activations)} {gb(r.kv_cache)} {gb(r.total)}  {r.note}")
        label = "total (resident + * phase)" if len(self.phases) > 1 else "total"
        lines.append(f"{label:<34}{'':>18}{'':>45}{gb(self.total)}")
        if self.setup.device_gb:
            verdict = "fits" if self.fits() else "does NOT fit"
            lines.append(f"device memory {self.setup.device_gb:g} GiB: {verdict} "
                         f"({100 * self.total / (self.setup.device_gb * GiB):.0f}% of it; the plan keeps 10% for the "
                         "CUDA context, fragmentation and buffers)")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _count(n: int) -> str:
    if not n:
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


# ----------------------------------------------------------------------------- helpers the stages' plans share


def layer_params(arch: Arch) -> float:
    """Parameters of one decoder layer (the body minus embeddings, final norm and head, over layers)."""
    return (arch.params - arch.lm_head - arch.vocab * arch.hidden - arch.hidden) / arch.layers


# NF4 with double quantization (QLoRA): ½ byte a weight, an 8-bit absmax per block of 64, and an fp32
# constant per 256 of those blocks (bitsandbytes' blocksizes)
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)


def qlora_weight_bytes(arch: Arch, classifier: bool, setup: Setup) -> float:
    """The frozen base of `finetune: qlora`: the decoder layers' Linear weights in NF4, everything else
    (embeddings, norms, head) fp32 as PEFT's prepare_model_for_kbit_training keeps it (bf16 under
    DeepSpeed), plus one Linear dequantized at a time for its matmul."""
    quantized = sum(i * o for layer, _, i, o in arch.linears if layer >= 0)
    rest = (arch.classifier_params if classifier else arch.params) - quantized
    largest = max((i * o for layer, _, i, o in arch.linears if layer >= 0), default=0)
    return NF4_BYTES * quantized + (2 if setup.zero is not None else 4) * (rest + largest)


def trained_model(name: str, arch: Arch, finetune: str, lora, setup: Setup, classifier: bool = False,
                  freeze_layers: int = 0) -> tuple[Row, int]:
    """A model the stage trains: its row, and the lowest layer that needs gradients (activations
    below it are not stored). `lora` is a LoraSettings; `classifier`: a scalar head instead of the
    LM head (reward model, critic; the head trains with LoRA too). `qlora`: LoRA on a base held in
    NF4 (`qlora_weight_bytes`); refused under ZeRO-3, as the stages refuse it."""
    params = arch.classifier_params if classifier else arch.params
    if finetune in ("lora", "qlora"):
        if finetune == "qlora" and setup.zero == 3:
            raise PlanError("finetune: qlora cannot run under ZeRO-3 (the 4-bit weights are not partitioned): plan it "
                            "with --deepspeed configs/deepspeed/zero2.json or one process")
        trainable = arch.lora_params(lora.rank, lora.target_modules, lora.layers) + (arch.hidden if classifier else 0)
        first = min(lora.layers) if lora.layers else 0
        row = model_states(name, params + trainable, trainable, setup, arch.largest_layer)  # the adapters are new weights
        kind = f"LoRA r={lora.rank}"
        if finetune == "qlora":
            row.weights = qlora_weight_bytes(arch, classifier, setup) + (2 if setup.zero is not None else 4) * trainable
            kind = f"QLoRA (NF4 base) r={lora.rank}"
        row.note = kind + (f" on layers ≥ {first}" if first else "") + "; " + row.note
        return row, first
    frozen = (arch.vocab * arch.hidden + freeze_layers * layer_params(arch)) if freeze_layers else 0
    trainable = int(params - frozen)
    row = model_states(name, params, trainable, setup, arch.largest_layer)
    if freeze_layers:
        row.note = f"layers < {freeze_layers} frozen; " + row.note
    return row, freeze_layers


def frozen_model(name: str, arch: Arch, setup: Setup, classifier: bool = False) -> Row:
    return model_states(name, arch.classifier_params if classifier else arch.params, 0, setup, arch.largest_layer)


def policy_and_reference(arch: Arch, finetune: str, lora, setup: Setup) -> tuple[list[Row], int]:
    """A trained policy and its reference: the same weights with the adapters off under LoRA (no
    row), a frozen copy under full fine-tuning. Also the lowest layer that needs gradients."""
    policy, first = trained_model("policy", arch, finetune, lora, setup)
    rows = [policy] + ([frozen_model("reference (frozen copy)", arch, setup)] if finetune == "full" else [])
    return rows, first


def training_phase(arch: Arch, sequences: int, tokens: int, first_layer: int, setup: Setup, checkpointing: bool,
                   logit_positions: int, label: str, entropy: bool = False) -> Row:
    """Activations (+ logits) of one training micro-batch; the note gives the other checkpointing choice."""
    act = activation_bytes(arch, sequences, tokens, first_layer, setup, checkpointing)
    other = activation_bytes(arch, sequences, tokens, first_layer, setup, not checkpointing)
    logits = logits_bytes(arch, sequences, logit_positions, setup, entropy=entropy) if logit_positions else 0.0
    note = (f"{sequences} seq × {tokens} tok; " + ("checkpointing" if checkpointing else "no checkpointing")
            + f" (with{'out' if checkpointing else ''} it: {(other + logits) / GiB:.2f})")
    return Row(label, activations=act + logits, note=note)


def longest_prompt_tokens(model_spec: str, sources, domains_dir: str, seed: int, cap: int) -> tuple[int, str]:
    """The longest of the recipe's prompts in tokens (chat template applied), at most `cap`; `cap`
    itself when the prompts or the tokenizer are not at hand. Also a note saying which."""
    try:
        from common.data.prompts import load_prompts
        from common.models import load_tokenizer
        from common.rewards.mixer import load_domains

        tokenizer = load_tokenizer(model_spec)
        prompts = load_prompts(sources, set(load_domains(domains_dir)), seed)
        ids = tokenizer.apply_chat_template([p.messages for p in prompts], add_generation_prompt=True, tokenize=True,
                                            return_dict=False)
        return min(cap, max(len(x) for x in ids)), f"longest prompt {max(len(x) for x in ids)} tok"
    except Exception:  # noqa: BLE001 — a plan before the data or the model exists: the limit
        return cap, "prompts at their limit"


def local_share(total: int, world: int) -> int:
    """A global batch's share on one rank."""
    return max(1, math.ceil(total / world))
