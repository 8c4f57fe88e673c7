"""`finetune: qlora` — LoRA adapters on a frozen 4-bit NF4 base (bitsandbytes, which trains on this CPU):
the memory plan by hand, the refusals (no kernels, ZeRO-3) in one line, gradients that survive an
inference pass, and each stage (SFT, reward model, DPO, PPO) training adapters that load as a model spec."""

from __future__ import annotations

import json

import pytest
import torch

from common.config import ConfigError, parse_args
from common.models import load_model_and_tokenizer
from common.models.lora import LoraSettings
from common.planning.formulas import NF4_BYTES, PlanError, Setup, resolve_arch, trained_model

from helpers.stages import REPO


@pytest.fixture(scope="module")
def tiny64(tmp_path_factory):
    """A tiny Llama whose layer inputs are multiples of 64 (bitsandbytes' CPU 4-bit kernel needs them)."""
    from common.models.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("m") / "tiny64", hidden_size=64)


def test_the_plan_counts_an_nf4_base_by_hand(tiny_model_dir):
    arch = resolve_arch(str(tiny_model_dir), "model")
    lora = LoraSettings(rank=4, target_modules=["q_proj", "v_proj"])
    row, first = trained_model("model", arch, "qlora", lora, Setup())
    # hidden 32, 2 KV heads of 8, MLP 64, 2 layers — per layer: q 32·32, k 32·16, v 32·16, o 32·32, gate/up/down 32·64
    quantized = 2 * (1024 + 512 + 512 + 1024 + 3 * 2048)
    adapters = 2 * (4 * (32 + 32) + 4 * (32 + 16))  # r·(in + out) on q and v of both layers = 896
    rest = arch.params - quantized  # embeddings, norms: fp32 after prepare_model_for_kbit_training
    assert row.trainable == adapters and first == 0
    assert row.weights == pytest.approx(NF4_BYTES * quantized + 4 * (rest + 2048) + 4 * adapters)  # + one dequantized Linear
    assert row.grads == 4 * adapters and row.optimizer == 8 * adapters
    full_lora, _ = trained_model("model", arch, "lora", lora, Setup())
    assert full_lora.weights - row.weights == pytest.approx((4 - NF4_BYTES) * quantized - 4 * 2048)
    with pytest.raises(PlanError, match="qlora cannot run under ZeRO-3"):
        trained_model("model", arch, "qlora", lora, Setup(world=8, zero=3, bf16=True))


def plan_total(capsys, *args: str) -> float:
    from tools.plan import main

    assert main(["--config", str(REPO / "configs/ppo/cluster-qwen3-8b.yaml"), "--nproc", "8", "--gpu_memory", "80",
                 *args]) in (0, 1)
    return float(next(line for line in capsys.readouterr().out.splitlines() if line.startswith("total")).split()[-1])


def test_the_cluster_recipe_plans_qlora_smaller_and_refuses_it_under_zero3(capsys):
    from tools.plan import main

    zero2 = ["--deepspeed", "configs/deepspeed/zero2.json"]
    lora, qlora = plan_total(capsys, "--finetune", "lora", *zero2), plan_total(capsys, "--finetune", "qlora", *zero2)
    assert 8 < lora - qlora < 11  # the 8B policy's bf16 base (15.3 GiB per rank) against NF4 (5.8 GiB)
    assert main(["--config", str(REPO / "configs/ppo/cluster-qwen3-8b.yaml"), "--finetune", "qlora"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "qlora cannot run under ZeRO-3" in err and "zero2.json" in err


@pytest.mark.parametrize("stage", ["sft", "reward_model", "dpo", "ppo"])
def test_every_stage_parses_qlora(stage):
    from tools.plan import STAGES

    cfg = parse_args(STAGES[stage][0], ["--config", str(REPO / f"configs/{stage}/tiny.yaml"), "--finetune", "qlora"])
    assert cfg.finetune == "qlora"


def test_gradients_reach_every_adapter_after_an_inference_pass(tiny64):
    """bitsandbytes repacks 4-bit weights for inference on AVX512-BF16 CPUs, after which training passes get
    no gradient; prepare_for_qlora turns that off (a PPO rollout is such an inference pass)."""
    from peft import get_peft_model

    from common.models.lora import peft_config
    from common.models.quantized import load_qlora_model

    model, _ = load_qlora_model(str(tiny64), "fp32")
    model = get_peft_model(model, peft_config(LoraSettings(rank=4, target_modules=["q_proj", "v_proj"]), "CAUSAL_LM"))
    ids = torch.randint(0, 500, (2, 12))
    with torch.no_grad():
        model.eval()(input_ids=ids)
    model.train()(input_ids=ids, labels=ids).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert len(grads) == 8 and all(g is not None and g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)
    assert {p.dtype for n, p in model.named_parameters() if "layers.0.mlp.up_proj" in n} == {torch.uint8}  # 4-bit


def test_qlora_is_refused_in_one_line_where_it_cannot_train(tiny64, tmp_path, monkeypatch):
    from common.models import quantized
    from sft.__main__ import main

    args = ["--config", str(REPO / "configs/sft/tiny.yaml"), "--model", str(tiny64), "--finetune", "qlora",
            "--output_root", str(tmp_path), "--trackers", "[]"]
    with pytest.raises(ConfigError, match=r"^finetune: qlora cannot run under ZeRO-3 \(.*zero3.json\)"):
        main([*args, "--deepspeed", "configs/deepspeed/zero3.json"])
    assert quantized.device_support("nf4", torch.device("meta"), train=True).startswith("bitsandbytes ")
    monkeypatch.setattr(quantized, "device_support", lambda *a, **k: "bitsandbytes is not installed (No module …)")
    with pytest.raises(ConfigError, match=r"^finetune: qlora needs bitsandbytes' 4-bit kernels with gradients on cpu; "
                                          r"this machine has: bitsandbytes is not installed"):
        main(args)
    assert not any(tmp_path.iterdir())  # refused before a run folder exists


def lora_b(folder) -> list[torch.Tensor]:
    from safetensors.torch import load_file

    weights = load_file(str(folder / "adapter_model.safetensors"))
    return [t for n, t in weights.items() if "lora_B" in n]


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["sft", "reward_model", "dpo", "ppo"])
def test_each_stage_trains_adapters_on_an_nf4_base(stage, tiny64, tmp_path):
    import importlib

    main = importlib.import_module(f"{stage}.__main__").main
    model_key = "--policy" if stage == "ppo" else "--model"
    steps = ["--steps", "2", "--save_steps", "2"] if stage == "ppo" else ["--max_steps", "2", "--save_steps", "2",
                                                                         "--eval_steps", "2"]
    main(["--config", str(REPO / f"configs/{stage}/tiny.yaml"), model_key, str(tiny64), "--finetune", "qlora",
          "--output_root", str(tmp_path), "--trackers", "[]", *steps])
    folder = tmp_path / "tiny" / "model"
    assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == str(tiny64)
    trained = lora_b(folder)
    assert trained and all(t.abs().sum() > 0 for t in trained)  # every adapter moved from its zero start
    if stage != "reward_model":  # the adapter applies to the full-precision base, as any LoRA run's does
        model, _ = load_model_and_tokenizer(str(folder))
        assert not getattr(model, "is_quantized", False) and model.model.layers[0].mlp.up_proj.weight.dtype == torch.float32
