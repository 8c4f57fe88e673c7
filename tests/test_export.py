"""The export stage end to end on a tiny chain (tiny Llama → SFT LoRA adapter → PPO LoRA adapter, run
folders as the stages leave them): the merged folder loads in plain transformers with no project
code and matches the unmerged chain's log-probs; the card's figures are the evaluation's; the GGUF
files load in transformers' GGUF reader with the export's greedy reply (f16 from an fp16 export is
lossless); the push goes through huggingface_hub to a local stand-in of the Hub, and is refused for a
failed verification (faked, and real: a tolerance of 0) or without credentials; a BCQ or reward model is
refused by what it is."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from common.stage import run_stage
from export.__main__ import main
from export.chain import ExportError, resolve_chain
from export.merge import unmerged_model
from export.verify import token_logprobs

from helpers.export_chain import evaluation_report, sft_and_ppo_runs
from helpers.hub_standin import HubStandIn
from helpers.stages import REPO

TINY = str(REPO / "configs/export/tiny.yaml")


@pytest.fixture(scope="module")
def chain_runs(tiny_model_dir, tmp_path_factory) -> dict:
    """The chain's run folders: an SFT adapter on the tiny model, a PPO adapter on that."""
    root = tmp_path_factory.mktemp("runs")
    sft, ppo = sft_and_ppo_runs(tiny_model_dir, root)
    return {"root": root, "sft": sft, "ppo": ppo}


@pytest.fixture(scope="module")
def runs(chain_runs, tiny_model_dir) -> dict:
    """The chain's run folders, an evaluation of the PPO model (and two it must not cite), one export."""
    root, sft, ppo = chain_runs["root"], chain_runs["sft"], chain_runs["ppo"]
    evals = root / "evaluation"
    report = evaluation_report(ppo / "model", sft / "model")
    for name, rep in (("other", {**report, "config": {**report["config"], "policies": [
            {"name": "sft", "model": str(sft / "model")}, {"name": "x", "model": str(tiny_model_dir)}]}}),
            ("ppo-vs-sft", report),
            ("unfinished", {**report, "status": "running"})):
        (evals / name).mkdir(parents=True)
        (evals / name / "eval.json").write_text(json.dumps(rep))
    out = root / "export"
    main(["--config", TINY, "--run", str(ppo), "--output_root", str(out), "--evaluations_root", str(evals)])
    return {"root": root, "sft": sft, "ppo": ppo, "report": report, "export": out / "tiny",
            "record": json.loads((out / "tiny/export.json").read_text())}


# The export loaded by a Python that cannot import any of this project's packages.
PLAIN_LOAD = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"common", "export", "sft", "ppo", "dpo", "reward_model", "evaluation", "tools"}:
            raise ImportError("project code: " + name)
sys.meta_path.insert(0, Block())
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, seqs = sys.argv[1], json.load(open(sys.argv[2]))
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
tok = AutoTokenizer.from_pretrained(folder)
out = []
with torch.no_grad():
    for s in seqs:
        logp = torch.log_softmax(model(torch.tensor([s])).logits[0, :-1], -1)
        out.append(logp.gather(-1, torch.tensor(s[1:])[:, None])[:, 0].tolist())
chat = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
print(json.dumps({"logprobs": out, "chat": chat, "eos": model.generation_config.eos_token_id}))
"""


def test_merged_folder_loads_without_project_code_and_matches_the_unmerged_chain(runs, tmp_path):
    folder, record = runs["export"], runs["record"]
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja",
            "model.safetensors.index.json", "README.md", "export.json"} <= names
    assert len([n for n in names if re.fullmatch(r"model-\d{5}-of-\d{5}\.safetensors", n)]) >= 2  # 100KB shards
    assert not (folder.parent / "tiny.tmp").exists()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config and config["dtype"] == "float16"
    for rel, entry in record["files"].items():
        assert (folder / rel).stat().st_size == entry["bytes"]
    assert [link["stage"] for link in record["chain"]] == [None, "sft", "ppo"]

    chain = resolve_chain(str(runs["ppo"]))
    model, tokenizer = unmerged_model(chain)
    ids = [tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True)
           for p in ("How do plants grow?", "What is a bond?")]
    ids = [i if isinstance(i, list) else i["input_ids"] for i in ids]
    (tmp_path / "seqs.json").write_text(json.dumps(ids))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RLHFKIT_CACHE")}
    proc = subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(folder), str(tmp_path / "seqs.json")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain = json.loads(proc.stdout.strip().splitlines()[-1])
    with torch.no_grad():
        chain_lp = [token_logprobs(model(torch.tensor([s])).logits[0], torch.tensor(s)) for s in ids]
    diff = max(float((a - torch.tensor(b)).abs().max()) for a, b in zip(chain_lp, plain["logprobs"]))
    effect = record["verification"]["adapter_effect"]["max_abs"]
    assert diff <= record["verification"]["tolerance"] < effect  # fp16 rounding only; the adapters move far more
    assert plain["chat"] == tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True,
                                                          tokenize=False)
    assert plain["eos"] == tokenizer.eos_token_id
    v = record["verification"]
    assert v["passed"] and v["sensitive"] and v["max_abs"] <= v["tolerance"] == 0.1 and v["tokens"] > 20


def test_card_shows_the_evaluation_figures_chain_and_data(runs):
    text = (runs["export"] / "README.md").read_text()
    meta = yaml.safe_load(re.match(r"---\n(.*?)\n---\n", text, flags=re.DOTALL).group(1))
    report = runs["report"]
    comp, mine = report["comparisons"]["ppo"], report["policies"]["ppo"]
    follows = report["instructions"]["policies"]["ppo"]
    expected = {"win_rate": comp["win_rate"], "mixed_win_rate": comp["mixed_win_rate"], "kl": mine["kl"],
                "reward_model": mine["reward_model"], "length": mine["length"], "eos_rate": mine["eos_rate"],
                "mixed_reward": mine["mixed_reward"], "if_prompt_strict": follows["prompt_strict"],
                "if_constraint_loose": follows["constraint_loose"]}
    metrics = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert "lc_win_rate" not in metrics  # withheld: no number to publish
    for key, fig in expected.items():
        assert metrics[key] == round(fig["mean"], 4), key
    assert meta["license"] == "other" and "base_model" not in meta  # a local tiny model: no Hub origin, no licence
    assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "text-generation"
    assert {"ppo", "sft", "gguf"} <= set(meta["tags"]) and meta["language"] == ["en", "zh"]
    assert "| win-rate over sft (reward model) | 78.3% [70.0, 85.8] |" in text
    assert f"withheld: {comp['lc_win_rate']['withheld']}" in text
    assert "| KL to the reference (nats per reply) | 5.062 [4.381, 5.791] |" in text
    assert "instruction following, prompt-level strict (IFEval rules) | 41.7% [25.0, 58.3]" in text
    assert report["warnings"][0] in text and "abc123def456" in text
    assert "on 60 prompts (`data/eval/general.jsonl`), 2 replies each, judged by the reward model" in text
    # the chain with its recipes and hashes, the data with its licence, the verification
    for run in (runs["sft"], runs["ppo"]):
        assert str(run) in text
        assert json.loads((run / "provenance.json").read_text())["inputs"]["data[0].path" if "sft" in run.parts
                                                                          else "prompts[0].path"]["sha256"] in text
    assert re.search(r"\| \S*data/samples/sft_chat.jsonl \| sft \(data\[0\]\.path\) \| written for this project \|", text)
    assert re.search(r"\| \S*data/prompts/general.jsonl \| ppo \(prompts\[0\]\.path\) \| Apache License 2.0 \|", text)
    assert "**passed**" in text and "gguf/tiny-q8_0.gguf" in text
    assert runs["record"]["evaluation"]["path"].endswith("ppo-vs-sft/eval.json")


def test_gguf_files_load_in_transformers_with_the_exports_greedy_reply(runs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, kinds = runs["export"], runs["record"]["kinds"]
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(folder)
    ids = tok.apply_chat_template([{"role": "user", "content": "Name a colour."}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    expected = hf.generate(ids, max_new_tokens=12, do_sample=False)
    f16 = folder / kinds["gguf-f16"]["file"]
    model = AutoModelForCausalLM.from_pretrained(f16.parent, gguf_file=f16.name, dtype=torch.float32)
    gguf_tok = AutoTokenizer.from_pretrained(f16.parent, gguf_file=f16.name)
    assert gguf_tok.apply_chat_template([{"role": "user", "content": "Name a colour."}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"].tolist() == ids.tolist()
    assert torch.equal(model.generate(ids, max_new_tokens=12, do_sample=False), expected)  # fp16 → f16: lossless
    for name, tolerance in (("gguf-f16", 1e-9), ("gguf-q8_0", 2e-2)):
        check = kinds[name]["check"]
        assert check["passed"] and check["same_tokenization"] and check["mean_kl"] <= tolerance, name
        assert kinds[name]["bytes"] == (folder / kinds[name]["file"]).stat().st_size
    assert kinds["gguf-q8_0"]["bytes"] < kinds["gguf-f16"]["bytes"]


def push_args(runs, hub, *extra) -> list[str]:
    return ["--config", TINY, "--run", str(runs["ppo"]), "--output_root", str(runs["export"].parent),
            "--push_to_hub", "me/tiny-ppo", "--hub_endpoint", hub.url, *extra]


def test_push_uploads_the_export_and_its_card_to_a_hub_stand_in(runs, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_stand_in")
    with HubStandIn(token="hf_stand_in") as hub:
        main(push_args(runs, hub))  # the finished export is pushed as it is
    assert not hub.unknown
    uploaded = hub.repos["me/tiny-ppo"]
    folder = runs["export"]
    local = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert set(uploaded) == local - {"config.yaml", "provenance.json"}
    assert all(uploaded[rel] == (folder / rel).read_bytes() for rel in uploaded)
    assert hub.private["me/tiny-ppo"] and hub.commits[0]["summary"] == "rlhfkit export tiny (fp16)"
    assert "pushed: " + hub.url in capsys.readouterr().out


def test_push_is_refused_for_a_failed_verification_and_without_credentials(runs, tmp_path, monkeypatch, capsys):
    failed = tmp_path / "export" / "tiny"
    shutil.copytree(runs["export"], failed)
    record = json.loads((failed / "export.json").read_text())
    record["verification"]["passed"] = False
    (failed / "export.json").write_text(json.dumps(record))
    monkeypatch.setenv("HF_TOKEN", "hf_stand_in")
    with HubStandIn(token="hf_stand_in") as hub:
        argv = push_args(runs, hub, "--output_root", str(tmp_path / "export"))
        assert run_stage(lambda: main(argv)) == 2
        assert not hub.commits
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: refusing to push") and "verification failed" in err and "\n" not in err
        monkeypatch.delenv("HF_TOKEN")
        monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))
        assert run_stage(lambda: main(push_args(runs, hub))) == 2
        err = capsys.readouterr().err.strip()
        assert "HF_TOKEN" in err and "\n" not in err and not hub.commits


def test_a_verification_that_fails_publishes_the_export_marked_failed_and_pushes_nothing(chain_runs, tmp_path,
                                                                                        monkeypatch, capsys):
    out = tmp_path / "export"
    monkeypatch.setenv("HF_TOKEN", "hf_stand_in")
    with HubStandIn(token="hf_stand_in") as hub:
        argv = ["--config", TINY, "--run", str(chain_runs["ppo"]), "--output_root", str(out), "--kinds", "[]",
                "--verify_count", "1", "--tolerance", "0", "--push_to_hub", "me/tiny-ppo", "--hub_endpoint", hub.url]
        assert run_stage(lambda: main(argv)) == 2  # fp16 weights cannot match the fp32 chain exactly
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()[-1]  # after the loading bars: the error, whole on one line
        assert err.startswith("error: verification failed (merged vs chain)") and err.endswith("will not be pushed"), err
        assert "FAILED" in captured.out
        record = json.loads((out / "tiny/export.json").read_text())
        v = record["verification"]
        assert not v["passed"] and v["tolerance"] == 0 < v["max_abs"] and not (out / "tiny.tmp").exists()
        assert run_stage(lambda: main(argv)) == 2  # named again: the finished export is pushed as it is, or not
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: refusing to push") and "verification failed" in err and "\n" not in err, err
    assert not hub.repos and not hub.commits


def fake_model_folders(root) -> dict:
    """Run folders with only the files that say what their model is: a BCQ model as bcq_offline saves it,
    a reward model (reward_config.json beside a sequence classifier), a LoRA adapter on that reward model."""
    from bcq_offline.saving import BCQ_CONFIG, WEIGHTS
    from common.rewards.scorer import REWARD_CONFIG

    bcq, rm, ppo = root / "bcq/default", root / "reward_model/default", root / "ppo/on-rm"
    for run in (bcq, rm, ppo):
        (run / "model").mkdir(parents=True)
        (run / "config.yaml").write_text("run_name: default\n")
    (bcq / "model" / BCQ_CONFIG).write_text(json.dumps({"base": "default"}))
    (bcq / "model" / WEIGHTS).write_bytes(b"")
    (rm / "model/config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"]}))
    (rm / "model" / REWARD_CONFIG).write_text(json.dumps({"max_length": 512, "reward_mean": 0.0, "reward_std": 1.0}))
    (ppo / "model/adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(rm / "model"),
                                                               "peft_type": "LORA", "task_type": "CAUSAL_LM"}))
    return {"bcq": bcq, "rm": rm, "ppo_on_rm": ppo}


def test_a_bcq_or_reward_model_is_refused_by_what_it_is_in_one_line_before_anything_is_written(tmp_path, capsys):
    made = fake_model_folders(tmp_path / "runs")
    bcq_model, rm_model = made["bcq"] / "model", made["rm"] / "model"
    out = tmp_path / "export"
    for run, says in ((made["bcq"], f"{bcq_model} is a BCQ model"), (bcq_model, f"{bcq_model} is a BCQ model"),
                      (made["rm"], f"{rm_model} is a reward model"), (rm_model, f"{rm_model} is a reward model"),
                      (made["ppo_on_rm"], f"{rm_model} is a reward model")):
        assert run_stage(lambda run=run: main(["--config", TINY, "--run", str(run), "--output_root", str(out)])) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"error: {says}") and "not a causal language model" in err and "\n" not in err, err
        assert not out.exists()


def test_a_chain_whose_base_is_missing_or_a_run_without_a_model_is_one_line_and_writes_nothing(runs, tmp_path, capsys):
    orphan = tmp_path / "runs/ppo/orphan"
    shutil.copytree(runs["ppo"], orphan)
    meta = json.loads((orphan / "model/adapter_config.json").read_text())
    meta["base_model_name_or_path"] = str(tmp_path / "runs/sft/gone/model")
    (orphan / "model/adapter_config.json").write_text(json.dumps(meta))
    unfinished = tmp_path / "runs/ppo/unfinished"
    unfinished.mkdir(parents=True)
    shutil.copy(runs["ppo"] / "config.yaml", unfinished / "config.yaml")
    (unfinished / "checkpoints").mkdir()
    out = tmp_path / "export"
    for run, says in ((orphan, ["adapter_config.json", "sft/gone/model", "missing"]),
                      (unfinished, ["unfinished", "not a finished run", "no model/"])):
        assert run_stage(lambda run=run: main(["--config", TINY, "--run", str(run), "--output_root", str(out)])) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "\n" not in err and all(s in err for s in says), err
        assert not out.exists() or not any(out.iterdir())


def test_a_failure_half_way_leaves_nothing_that_looks_finished(runs, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("export.kinds.write_gguf", broken)
    out = tmp_path / "export"
    with pytest.raises(RuntimeError, match="disk full"):
        main(["--config", TINY, "--run", str(runs["ppo"]), "--output_root", str(out), "--verify_count", "1"])
    assert not (out / "tiny").exists() and (out / "tiny.tmp").is_dir()  # the merged folder got that far, unpublished
    assert not (out / "tiny.tmp" / "export.json").exists()


def test_bad_device_dtype_kind_or_credentials_fail_before_anything_is_written(runs, tmp_path, monkeypatch, capsys):
    from export.merge import pick_device

    out = tmp_path / "export"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "no-token"))
    cases = ((["--device", "cuda"], "device: cuda"), (["--kinds", "[gguf-q3]"], "unknown export kind 'gguf-q3'"),
             (["--push_to_hub", "me/x"], "HF_TOKEN"))
    for extra, says in cases:
        argv = ["--config", TINY, "--run", str(runs["ppo"]), "--output_root", str(out), *extra]
        if torch.cuda.is_available() and extra[0] == "--device":
            continue
        assert run_stage(lambda argv=argv: main(argv)) == 2
        err = capsys.readouterr().err.strip()
        assert says in err and "\n" not in err, err
        assert not out.exists()
    # a GPU without bf16 (pre-Ampere) is refused by name
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla T4")
    with pytest.raises(ExportError, match="dtype: bf16 cannot run on this GPU \\(Tesla T4\\)"):
        pick_device("cuda", "bf16")
