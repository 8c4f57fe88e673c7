"""The DPO stage (TRL's DPOTrainer) end to end on the tiny model: losses logged, adapters changed,
the output loads as a policy in PPO and the evaluation stage; every loss type; the reference is the
SFT model (not its base) with LoRA and with full fine-tuning; pairs from K-way rankings, weighted
per pair or per group; over-long pairs cut once for both replies and counted, not dropped; bad
rows; resume after SIGKILL; 2 processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from common.models import load_model_and_tokenizer
from common.tracking import read_metrics
from dpo.__main__ import main
from dpo.train import build_trainer

from helpers.stages import REPO, make_two_processes

TINY = str(REPO / "configs/dpo/tiny.yaml")
SAMPLES = REPO / "data/samples/preferences.jsonl"


def dpo_args(model_dir, out: Path, *extra: str) -> list[str]:
    return ["--config", TINY, "--model", str(model_dir), "--output_root", str(out), "--data", f"[{{path: {SAMPLES}}}]",
            *extra]


def test_tiny_run_logs_losses_changes_the_adapter_and_loads_as_a_policy(tiny_model_dir, tmp_path):
    main(dpo_args(tiny_model_dir, tmp_path))
    run = tmp_path / "tiny"
    rows = read_metrics(run)
    assert [r["loss"] for r in rows if "loss" in r] and any("eval_rewards/accuracies" in r for r in rows)
    assert any("eval_rewards/margins" in r for r in rows)
    assert (run / "wandb").is_dir()
    adapter = load_file(run / "model/adapter_model.safetensors")
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # B starts at zero: training moved it
    meta = json.loads((run / "model/adapter_config.json").read_text())
    assert meta["base_model_name_or_path"] == str(Path(tiny_model_dir).resolve())
    # the output is a policy spec for PPO and for the evaluation stage
    from evaluation.__main__ import main as evaluate
    from ppo.__main__ import main as ppo

    ppo(["--config", str(REPO / "configs/ppo/tiny.yaml"), "--policy", str(run / "model"), "--output_root",
         str(tmp_path / "ppo"), "--steps", "1"])
    assert [r["step"] for r in read_metrics(tmp_path / "ppo/tiny")] == [1]
    policies = f"[{{name: base, model: {tiny_model_dir}}}, {{name: dpo, model: {run / 'model'}}}]"
    evaluate(["--config", str(REPO / "configs/evaluation/tiny.yaml"), "--output_root", str(tmp_path / "eval"),
              "--max_prompts", "2", "--policies", policies])
    report = json.loads((tmp_path / "eval/tiny/eval.json").read_text())
    assert report["comparisons"]["dpo"]["pairs"] == 4 and report["policies"]["dpo"]["kl"]["mean"] != 0


@pytest.mark.parametrize("loss, extra", [("ipo", []), ("robust", ["--label_smoothing", "0.1"])])
def test_every_loss_type_trains(loss, extra, tiny_model_dir, tmp_path):
    main(dpo_args(tiny_model_dir, tmp_path, "--loss_type", loss, "--max_steps", "2", *extra))
    rows = read_metrics(tmp_path / "tiny")
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows if "loss" in r)


def test_rankings_become_every_ordered_pair_and_long_pairs_are_cut_not_dropped(tiny_model_dir, tmp_path):
    from common.data.preferences import PreferenceGroup
    from dpo.data import pairs_of

    group = PreferenceGroup([{"role": "user", "content": "q"}], ["best", "mid", "tie-mid", "worst"], [1, 2, 2, 3])
    pairs = [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs_of(group)]
    # 1 over each of 3, each 2 over the 3; the tied pair gives none: 3 + 2 = 5
    assert sorted(pairs) == sorted([("best", "mid"), ("best", "tie-mid"), ("best", "worst"), ("mid", "worst"),
                                    ("tie-mid", "worst")])
    long_row = {"prompt": "word " * 200, "chosen": "yes " * 5, "rejected": "no " * 5}
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps(long_row) + "\n" + "".join(SAMPLES.read_text().splitlines(keepends=True)[:8]))
    main(["--config", TINY, "--model", str(tiny_model_dir), "--output_root", str(tmp_path), "--data",
          f"[{{path: {data}}}]", "--val_fraction", "0", "--max_steps", "1"])
    summary = json.loads((tmp_path / "tiny/summary.json").read_text())
    assert summary["truncated_pairs"] == 1  # counted in the trainer's own (tokenized) training set: kept, not dropped


def test_cut_pair_by_hand():
    from dpo.batching import cut_pair

    p, c, r = list(range(10)), [100, 101, 102], [200]
    assert cut_pair(p, c, r, 20) == (p, c, r)  # fits: unchanged
    # 10 + 3 > 8: the prompt keeps its last 8 − 3 = 5 tokens, for both replies
    assert cut_pair(p, c, r, 8) == ([5, 6, 7, 8, 9], c, r)
    # a reply of 7 leaves 1 prompt token at max_length 8; the prompt keeps 8 // 4 = 2, the replies 6
    assert cut_pair(p, list(range(100, 107)), r, 8) == ([8, 9], list(range(100, 106)), r)
    assert cut_pair([1], list(range(100, 110)), r, 8) == ([1], list(range(100, 107)), r)  # a short prompt stays whole


def test_a_long_prompt_is_cut_once_the_same_for_both_replies(tiny_model_dir, tmp_path):
    model, tok = load_model_and_tokenizer(str(tiny_model_dir))
    pair = {"prompt": [{"role": "user", "content": "word " * 200}],
            "chosen": [{"role": "assistant", "content": "yes"}],
            "rejected": [{"role": "assistant", "content": "no, no, no, no, no, no, no, no, no, no, no, no"}]}
    trainer = build_trainer(dpo_config(tiny_model_dir, tmp_path), run_dir(tmp_path), one_pair(pair), model, tok)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, attention, completion = batch["input_ids"], batch["attention_mask"], batch["completion_mask"]
    assert attention.sum(1).max() <= 96  # the tiny recipe's max_length
    prompts = [ids[i][(attention[i] == 1) & (completion[i] == 0)].tolist() for i in range(2)]
    assert len(prompts[0]) > 10 and prompts[0] == prompts[1]  # chosen (row 0) and rejected (row 1) see one prompt
    replies = [ids[i][completion[i] == 1].tolist() for i in range(2)]
    assert replies == [trainer.train_dataset[0]["chosen_ids"], trainer.train_dataset[0]["rejected_ids"]]


@pytest.fixture(scope="module")
def sft_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    """An SFT output as our stages save it: a LoRA adapter with random non-zero weights, naming its base."""
    from peft import get_peft_model

    from common.models.lora import LoraSettings, peft_config
    from common.training import record_adapter_base

    folder = tmp_path_factory.mktemp("sft") / "model"
    base, tok = load_model_and_tokenizer(str(tiny_model_dir))
    torch.manual_seed(0)
    peft = get_peft_model(base, peft_config(LoraSettings(rank=4, alpha=8, dropout=0.0), "CAUSAL_LM"))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn_like(p) * 0.5)
    peft.save_pretrained(folder)
    record_adapter_base(folder, str(tiny_model_dir))
    tok.save_pretrained(folder)
    return folder


def completion_logprobs(model, batch) -> list[float]:
    """Σ log π(completion tokens) per row of a DPO batch (row 0 chosen, row 1 rejected): a plain forward."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logp = torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return (logp * batch["completion_mask"][:, 1:]).sum(1).tolist()


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_the_reference_is_the_sft_model_not_its_base(finetune, sft_adapter, tiny_model_dir, tmp_path):
    """The policy starts from an SFT adapter (merged on load); DPO's reference must be that SFT
    model. TRL left alone reloads `config._name_or_path` — the adapter's base — in full fine-tuning."""
    cfg = dpo_config(sft_adapter, tmp_path, "--finetune", finetune)
    model, tok = load_model_and_tokenizer(str(sft_adapter))
    pair = {"prompt": [{"role": "user", "content": "What is 12 plus 30?"}],
            "chosen": [{"role": "assistant", "content": "The answer is 42."}],
            "rejected": [{"role": "assistant", "content": "I am a helpful assistant."}]}
    trainer = build_trainer(cfg, run_dir(tmp_path), one_pair(pair), model, tok)
    figures = trainer.evaluate()  # rewards = β (log π − log π_ref); the policy has not moved: π = SFT
    reference = [figures[f"eval_logps/{k}"] - figures[f"eval_rewards/{k}"] / cfg.beta for k in ("chosen", "rejected")]
    batch = trainer.data_collator([trainer.eval_dataset[0]])
    sft = completion_logprobs(load_model_and_tokenizer(str(sft_adapter))[0].eval(), batch)
    base = completion_logprobs(load_model_and_tokenizer(str(tiny_model_dir))[0].eval(), batch)
    assert reference == pytest.approx(sft, abs=1e-3)
    assert min(abs(a - b) for a, b in zip(reference, base)) > 0.1, (reference, base)


def test_group_weighting_counts_each_ranking_once(tiny_model_dir, tmp_path):
    from dpo.batching import GroupWeightedSampler, group_weights
    from dpo.data import prepare

    # one 4-response ranking (6 pairs) and three plain pairs: per pair the ranking has 6 of 9 draws,
    # per group 1 of 4
    assert group_weights([6] * 6 + [1] * 3) == pytest.approx([1 / 6] * 6 + [1.0] * 3)
    sampler = GroupWeightedSampler(group_weights([6] * 6 + [1] * 3), seed=0)
    draws = []
    for epoch in range(2000):
        sampler.set_epoch(epoch)
        draws += list(sampler)
    assert len(draws) == 9 * 2000 and sum(i < 6 for i in draws) / len(draws) == pytest.approx(0.25, abs=0.01)
    sampler.set_epoch(3)
    assert list(sampler) == list(sampler)  # the same draw for the same (seed, epoch): every rank, every resume
    rows = tmp_path / "ranked.jsonl"
    rows.write_text(json.dumps({"prompt": "q", "responses": ["a", "b", "c", "d"], "ranks": [1, 2, 3, 4]}) + "\n"
                    + "".join(json.dumps({"prompt": f"p{i}", "chosen": "yes", "rejected": "no"}) + "\n" for i in range(3)))
    source = ["--data", f"[{{path: {rows}}}]", "--val_fraction", "0"]
    assert prepare(dpo_config(tiny_model_dir, tmp_path, *source)).train_group_sizes is None  # the default: per pair
    data = prepare(dpo_config(tiny_model_dir, tmp_path, *source, "--pair_weighting", "group"))
    assert sorted(data.train_group_sizes) == [1, 1, 1] + [6] * 6
    model, tok = load_model_and_tokenizer(str(tiny_model_dir))
    trainer = build_trainer(dpo_config(tiny_model_dir, tmp_path, *source, "--pair_weighting", "group"),
                            run_dir(tmp_path), data, model, tok)
    assert isinstance(trainer._get_train_sampler(), GroupWeightedSampler)
    main(dpo_args(tiny_model_dir, tmp_path / "out", "--pair_weighting", "group", "--max_steps", "2"))
    assert [r["loss"] for r in read_metrics(tmp_path / "out/tiny") if "loss" in r]


def dpo_config(model_dir, out: Path, *extra: str):
    from common.config import parse_args
    from dpo.config import DPOStageConfig

    return parse_args(DPOStageConfig, dpo_args(model_dir, out, *extra))


def run_dir(tmp_path: Path) -> Path:
    (tmp_path / "run").mkdir()
    return tmp_path / "run"


def one_pair(pair: dict):
    """The same pair as the training and the validation set."""
    from datasets import Dataset

    from common.data.hygiene import HygieneReport
    from dpo.data import PreparedPairs

    return PreparedPairs(Dataset.from_list([pair]), Dataset.from_list([pair]), HygieneReport())




@pytest.mark.slow
def test_make_dpo_two_processes_with_zero2(tiny_model_dir, tmp_path):
    args = f"--model {tiny_model_dir} --output_root {tmp_path} --max_steps 2"  # the recipe's own sample data
    proc = make_two_processes("dpo", "zero2", "configs/dpo/tiny.yaml", args)
    assert "--num_gpus 2" in proc.stdout
    assert (tmp_path / "tiny/model/adapter_model.safetensors").is_file()
    assert len(list((tmp_path / "tiny/wandb").glob("offline-run-*"))) == 1
