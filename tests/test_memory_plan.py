"""The memory planner: its numbers for the tiny model against a table worked out by hand, its
DeepSpeed constants against DeepSpeed's own estimators, the CLI's verdicts and bad input, and a
stage refusing a run that cannot fit."""

import pytest

from common.config import ConfigError, parse_args
from common.planning.formulas import PlanError, Setup, kv_cache_bytes, model_states, resolve_arch
from common.planning.preflight import suggestions
from tools.plan import STAGES, main, plan_for

from helpers.stages import REPO

# The tiny Llama (common/models/tiny.py): h 32, I 64, 2 layers, 4 heads of 8, 2 KV heads, V 512, untied.
#   embeddings 512·32 = 16384; a layer: q 32·32 + k 32·16 + v 32·16 + o 32·32 = 3072, MLP 3·32·64 = 6144,
#   2 norms 64 → 9280; two layers 18560; final norm 32; LM head 16384.  Ψ = 51360.
PSI = 51360
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def tiny():
    return resolve_arch("tiny-random", "model")


def test_the_tiny_architecture_counted_by_hand(tiny):
    assert tiny.params == PSI
    assert tiny.classifier_params == PSI - 16384 + 32  # a scalar head (32 weights) in place of the LM head
    assert tiny.largest_layer == 16384
    # LoRA r = 4 on layer 1: q 4·(32+32) + k 4·(32+16) + v 4·(32+16) + o 4·(32+32) + gate, up 4·(32+64) + down 4·(64+32)
    assert tiny.lora_params(4, TARGETS, [1]) == 256 + 192 + 192 + 256 + 3 * 384 == 2048
    assert tiny.lora_params(4, ["q_proj"], None) == 2 * 256
    assert (tiny.hidden, tiny.layers, tiny.kv_heads, tiny.head_dim, tiny.intermediate, tiny.vocab) == (32, 2, 2, 8, 64, 512)


def test_model_states_plain_pytorch_and_each_zero_stage():
    plain = model_states("m", PSI, PSI, Setup())
    assert (plain.weights, plain.grads, plain.optimizer) == (4 * PSI, 4 * PSI, 8 * PSI)
    z2 = model_states("m", PSI, PSI, Setup(world=2, zero=2, bf16=True))
    assert (z2.weights, z2.grads, z2.optimizer) == (2 * PSI, PSI, 8 * PSI)  # 2Ψ, 2Ψ/2, 16Ψ/2
    z3 = model_states("m", PSI, PSI, Setup(world=2, zero=3, bf16=True), largest_layer=16384)
    assert (z3.weights, z3.grads, z3.optimizer) == (PSI + 4 * 16384, PSI, 8 * PSI)
    offload = model_states("m", PSI, PSI, Setup(world=2, zero=3, bf16=True, offload_optimizer=True, offload_param=True),
                           largest_layer=16384)
    assert offload.total == 4 * 16384
    frozen = model_states("ref", PSI, 0, Setup(world=2, zero=3, bf16=True), largest_layer=16384)
    assert frozen.total == PSI + 4 * 16384


def test_zero_constants_match_deepspeeds_own_estimators():
    z2 = pytest.importorskip("deepspeed.runtime.zero.stage_1_and_2")
    z3 = pytest.importorskip("deepspeed.runtime.zero.stage3")
    for n in (2, 8):
        _, gpu2 = z2.estimate_zero2_model_states_mem_needs(PSI * 1000, n, 1, cpu_offload=False)
        assert model_states("m", PSI * 1000, PSI * 1000, Setup(world=n, zero=2, bf16=True)).total == pytest.approx(gpu2, abs=1)
        _, gpu3, _ = z3.estimate_zero3_model_states_mem_needs(PSI * 1000, 16384, n, 1, cpu_offload=False)
        ours = model_states("m", PSI * 1000, PSI * 1000, Setup(world=n, zero=3, bf16=True), largest_layer=16384).total
        assert ours == pytest.approx(gpu3 + 2 * PSI * 1000 / n, abs=1)  # + the bf16 partition DeepSpeed leaves out


def test_kv_cache_by_hand(tiny):
    # 2 (K, V) · 2 layers · 2 KV heads · 8 dims · 3 sequences · 12 tokens · 4 bytes
    assert kv_cache_bytes(tiny, 3, 12, 4) == 2 * 2 * 2 * 8 * 3 * 12 * 4 == 9216


def test_autocast_keeps_activations_fp32_sized_and_logits_bf16(tiny):
    from common.planning.formulas import activation_bytes, logits_bytes

    autocast, deepspeed_bf16, fp32 = Setup(bf16=True), Setup(bf16=True, zero=2), Setup()
    assert (autocast.act_bytes, autocast.out_bytes) == (4, 2)  # fp32 weights, bf16 matmul outputs
    assert (deepspeed_bf16.act_bytes, deepspeed_bf16.out_bytes) == (2, 2)  # the weights themselves are bf16
    assert activation_bytes(tiny, 2, 5, 0, autocast) == activation_bytes(tiny, 2, 5, 0, fp32)
    assert activation_bytes(tiny, 2, 5, 0, deepspeed_bf16) == activation_bytes(tiny, 2, 5, 0, fp32) / 2
    # no gradients: bf16 output + its fp32 copy + the log-softmax (2 + 4 + 4); fp32: .float() is the
    # output itself (4 + 4); lean (the output freed first): 8 either way
    v = tiny.vocab
    assert logits_bytes(tiny, 1, 1, autocast, grad=False) == 10 * v
    assert logits_bytes(tiny, 1, 1, fp32, grad=False) == 8 * v
    assert logits_bytes(tiny, 1, 1, autocast, grad=False, lean=True) == 8 * v
    # training: output, fp32 copy, saved log-softmax, and their gradients (2a + 12)
    assert logits_bytes(tiny, 1, 1, autocast) == 16 * v and logits_bytes(tiny, 1, 1, fp32) == 20 * v


def sft_cfg(*extra):
    return parse_args(_cls("sft"), ["--config", str(REPO / "configs/sft/tiny.yaml"), "--model", "tiny-random", *extra])


def _cls(stage):
    return STAGES[stage][0]


def test_an_sft_plan_for_the_tiny_model_against_the_hand_worked_table():
    cfg = sft_cfg("--finetune", "full", "--batch_size", "2", "--max_length", "10", "--precision", "fp32")
    plan = plan_for("sft", cfg, Setup(device="cpu"))
    # states 4Ψ + 4Ψ + 8Ψ = 821760; activations 2 seq · 10 tok · 2 layers · 4 B · (6·32 + 2·16 + 4·64 = 480) = 76800;
    # logits 2 · 10 · 512 positions × (output 4 + fp32 copy 4 + log-softmax 4 + their gradients 4 + 4
    # + TRL's entropy figure 8 = 28 B) = 286720
    assert plan.resident == 16 * PSI == 821760
    assert plan.peak_phase == ("train", 76800 + 286720)
    assert plan.total == 1185280
    ckpt = plan_for("sft", sft_cfg("--finetune", "full", "--batch_size", "2", "--max_length", "10", "--precision",
                                   "fp32", "--gradient_checkpointing", "true"), Setup(device="cpu"))
    # checkpointing: each layer keeps its input (2 · 10 · 2 · 4 · 32 = 5120) plus one layer's worth (2 · 10 · 1920 = 38400)
    assert ckpt.peak_phase[1] == 5120 + 38400 + 286720
    lora = plan_for("sft", sft_cfg("--finetune", "lora", "--lora.rank", "4", "--lora.layers", "[1]", "--lora.target_modules",
                                   f"[{', '.join(TARGETS)}]", "--batch_size", "2", "--max_length", "10", "--precision",
                                   "fp32"), Setup(device="cpu"))
    # LoRA on layer 1: 4Ψ frozen + the adapters' 2048 weights, gradients and moments (16 bytes each); activations of
    # layer 1 only
    assert lora.resident == 4 * PSI + 16 * 2048
    assert lora.peak_phase[1] == 2 * 10 * 1 * 4 * 480 + 286720


def test_every_shipped_recipe_plans(capsys):
    for stage in STAGES:
        for recipe in sorted((REPO / "configs" / stage).glob("*.yaml")):
            if recipe.stem in ("default", "own-logs", "estimators"):
                continue  # they stand on runs that a clean checkout does not have (and no recipe makes)
            nproc = "8" if "qwen3" in recipe.stem else "1"  # the cluster recipes at their size
            assert main(["--config", str(recipe), "--nproc", nproc, "--gpu_memory", "1000"]) == 0, (recipe, capsys.readouterr())


def test_the_cluster_recipe_fits_eight_80gb_gpus_and_names_what_would_fit_on_fewer(capsys):
    recipe = str(REPO / "configs/ppo/cluster-qwen3-8b.yaml")
    assert main(["--config", recipe, "--nnodes", "2", "--nproc", "8", "--gpu_memory", "80"]) == 0
    out = capsys.readouterr().out
    assert "policy" in out and "8.19B" in out and "critic" in out and "reward model" in out and ": fits" in out
    assert main(["--config", recipe, "--nproc", "8", "--gpu_memory", "24"]) == 1
    out = capsys.readouterr().out
    assert "does NOT fit" in out and "✓" in out  # a combination that fits is named


def test_suggestions_fit_when_the_plan_does_not():
    cfg = sft_cfg("--finetune", "full", "--batch_size", "64", "--max_length", "256", "--precision", "fp32")
    setup = Setup(device="cpu", device_gb=plan_for("sft", cfg, Setup(device="cpu")).total / 2**30 * 0.8)
    assert plan_for("sft", cfg, setup).fits() is False
    changes = suggestions(STAGES["sft"][1], cfg, setup)
    assert any(fits for _, _, fits in changes)
    assert [c for c, _, fits in changes if fits][0].startswith(("half the micro-batch", "gradient checkpointing"))


@pytest.mark.parametrize("argv, message", [
    (["--config", "configs/sft/tiny.yaml", "--gpu_memory", "0"], "--gpu_memory must be > 0"),
    (["--config", "configs/sft/tiny.yaml", "--gpu_memory", "-8"], "--gpu_memory must be > 0"),
    (["--config", "configs/sft/missing.yaml"], "configs/sft/missing.yaml"),
    (["--config", "configs/sft/tiny.yaml", "--batch_size", "x"], "batch_size"),
    (["--config", "configs/sft/tiny.yaml", "--model", "no-org/no-such-model"], "model: no config.json for model"),
    (["--config", "README.md"], "pass --stage"),
    (["--config", "configs/sft/tiny.yaml", "--nproc", "0"], "--nnodes and --nproc must be ≥ 1"),
])
def test_bad_input_is_one_clear_line(argv, message, capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_a_broken_deepspeed_config_names_the_file_and_line(tmp_path):
    from common.planning.formulas import setup_from

    bad = tmp_path / "ds.json"
    bad.write_text('{"zero_optimization": {"stage": 3,}\n}')
    with pytest.raises(PlanError, match=r"ds\.json line 1: not JSON"):
        setup_from(str(bad), "bf16", 2, None)


def test_a_stage_refuses_a_run_that_cannot_fit_before_writing_anything(tmp_path):
    from sft.__main__ import main as sft_main

    argv = ["--config", str(REPO / "configs/sft/tiny.yaml"), "--output_root", str(tmp_path), "--batch_size", "4000000",
            "--max_length", "4096"]
    with pytest.raises(ConfigError, match=r"memory plan .* exceeds .*--memory_check false runs anyway"):
        sft_main(argv)
    assert not any(tmp_path.iterdir())


def test_a_bf16_sampler_is_one_more_row_of_half_the_policys_bytes(monkeypatch):
    from ppo.config import PPOStageConfig

    monkeypatch.chdir(REPO)
    plans = {p: plan_for("ppo", parse_args(PPOStageConfig, ["--config", "configs/ppo/tiny.yaml", "--rollout_precision", p]),
                         Setup(device="cpu")) for p in ("same", "bf16")}
    extra = [r for r in plans["bf16"].rows if r.name == "sampler (bf16 copy)"]
    assert len(extra) == 1 and not any(r.name.startswith("sampler") for r in plans["same"].rows)
    policy = plans["same"].rows[0]  # LoRA: the model's weights plus the adapters'; the sampler holds merged weights
    assert extra[0].weights == 2 * extra[0].params == 2 * (policy.params - policy.trainable)
    assert plans["bf16"].total == plans["same"].total + extra[0].weights
