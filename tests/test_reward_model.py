"""The reward-model stage end to end on tiny local models."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from common.models import load_model_and_tokenizer
from common.rewards.scorer import load_reward_scorer
from common.tracking import read_metrics
from reward_model.__main__ import main

from helpers.stages import REPO, make_two_processes

TINY = str(REPO / "configs/reward_model/tiny.yaml")
SAMPLES = str(REPO / "data/samples/preferences.jsonl")


def rm_args(model_dir, out: Path, *extra: str) -> list[str]:
    return ["--config", TINY, "--model", str(model_dir), "--output_root", str(out),
            "--data", f"[{{path: {SAMPLES}}}]", *extra]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def separable_preferences(path: Path, n: int = 160, seed: int = 0) -> Path:
    """Polite answers beat rude ones: a cue a tiny model can learn, on prompts it never saw."""
    rng = random.Random(seed)
    with path.open("w") as f:
        for _ in range(n):
            a, b = rng.randint(2, 999), rng.randint(2, 999)
            row = {"prompt": f"What is {a} plus {b}?", "chosen": f"It is {a + b}. Glad to help.",
                   "rejected": f"It is {a + b}. Go away now.", "domain": rng.choice(["finance", "code"])}
            if rng.random() < 0.5:  # the order of slots must not matter
                row = {"prompt": row["prompt"], "responses": [row["rejected"], row["chosen"]], "ranks": [2, 1],
                       "domain": row["domain"]}
            f.write(json.dumps(row) + "\n")
    return path


def test_tiny_run_logs_loss_changes_weights_and_saves_a_scorer(tiny_model_dir, tmp_path):
    main(rm_args(tiny_model_dir, tmp_path))
    run = tmp_path / "tiny"
    metrics = read_metrics(run)
    assert [m["loss"] for m in metrics if "loss" in m]
    assert any("eval_accuracy" in m for m in metrics)
    reward_config = json.loads((run / "model/reward_config.json").read_text())
    assert reward_config["max_length"] == 96 and reward_config["reward_std"] > 0
    base, _ = load_model_and_tokenizer(str(tiny_model_dir), model_class=AutoModelForSequenceClassification, num_labels=1)
    trained, _ = load_model_and_tokenizer(str(run / "model"), model_class=AutoModelForSequenceClassification)
    before, after = base.state_dict(), trained.state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if k != "score.weight")
    scorer = load_reward_scorer(str(run / "model"))
    rewards = scorer(["What is 2 plus 2?", [{"role": "user", "content": "hi"}]], ["4.", "hello"])
    assert rewards.shape == (2,) and torch.isfinite(rewards).all()
    normalized = scorer(["What is 2 plus 2?"], ["4."], normalize=True)
    assert normalized.item() == pytest.approx((rewards[0].item() - scorer.mean) / scorer.std, abs=1e-5)


@pytest.mark.parametrize("loss", ["bradley_terry", "plackett_luce"])
def test_held_out_accuracy_rises_well_above_chance(loss, tiny_model_dir, tmp_path):
    data = separable_preferences(tmp_path / "sep.jsonl")
    main(["--config", TINY, "--model", str(tiny_model_dir), "--output_root", str(tmp_path), "--data", f"[{{path: {data}}}]",
          "--loss", loss, "--max_steps", "60", "--eval_steps", "60", "--save_steps", "60", "--batch_size", "8",
          "--learning_rate", "0.01", "--val_fraction", "0.25"])
    figures = summary(tmp_path / "tiny")
    assert figures["eval_pairs"] >= 30
    assert figures["eval_accuracy"] >= 0.85, figures
    out = subprocess.run(
        [sys.executable, "-m", "reward_model.evaluate", "--model", str(tmp_path / "tiny/model"), "--data", str(data), "--json"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout
    assert json.loads(out.strip().splitlines()[-1])["accuracy"] >= 0.85


def test_lora_reward_model_on_an_sft_adapter_backbone(tiny_model_dir, tmp_path):
    from sft.__main__ import main as sft_main

    sft_main(["--config", str(REPO / "configs/sft/tiny.yaml"), "--model", str(tiny_model_dir),
              "--output_root", str(tmp_path / "sft"), "--max_steps", "2",
              "--data", f"[{{path: {REPO}/data/samples/sft_chat.jsonl}}]"])
    sft_model = tmp_path / "sft/tiny/model"
    main(rm_args(sft_model, tmp_path / "rm", "--finetune", "lora", "--lora.target_modules", "[q_proj, v_proj]",
                 "--loss", "plackett_luce", "--max_steps", "4"))
    model_dir = tmp_path / "rm/tiny/model"
    adapter = json.loads((model_dir / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == str(sft_model.resolve())
    assert "score" in adapter["modules_to_save"], "the new head is saved with the adapter"
    scores = load_reward_scorer(str(model_dir))(["q"] * 3, ["a", "b", "c"])
    assert scores.shape == (3,) and scores.std() > 0




@pytest.mark.slow
@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_make_rm_two_processes_with_deepspeed(stage, tiny_model_dir, tmp_path):
    args = f"--model {tiny_model_dir} --output_root {tmp_path} --max_steps 4 --save_steps 4 --eval_steps 4"
    make_two_processes("rm", stage, "configs/reward_model/tiny.yaml", args)
    run = tmp_path / "tiny"
    assert [m["loss"] for m in read_metrics(run) if "loss" in m]
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
    shards = list((run / "checkpoints").glob("checkpoint-*/global_step*/*optim_states.pt"))
    assert len(shards) == 2, "optimizer state partitioned over 2 ranks"
    scores = load_reward_scorer(str(run / "model"))(["q", "q"], ["a", "b"])
    assert torch.isfinite(scores).all()


def test_early_stopping_on_validation_loss(tiny_model_dir, tmp_path):
    main(rm_args(tiny_model_dir, tmp_path, "--max_steps", "40", "--eval_steps", "2", "--save_steps", "2",
                 "--early_stopping_patience", "1", "--early_stopping_threshold", "100"))
    assert summary(tmp_path / "tiny")["global_step"] == 4, "first eval sets the best, the second fails the threshold"


def test_evaluate_skips_and_counts_dialogues_that_diverge_early_like_training(tiny_reward_model, tmp_path):
    from reward_model.evaluate import evaluate

    rows = [{"chosen": f"\n\nHuman: q{i}\n\nAssistant: a good answer {i}", "rejected": f"\n\nHuman: q{i}\n\nAssistant: bad {i}"}
            for i in range(5)]
    # real HH has rows like this: a stray "Human:" inside a reply makes the dialogues differ before the end
    rows.insert(2, {"chosen": "\n\nHuman: q\n\nAssistant: x\n\nHuman: more\n\nAssistant: y",
                    "rejected": "\n\nHuman: q\n\nAssistant: z"})
    data = tmp_path / "hh.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    figures = evaluate(str(tiny_reward_model), str(data), batch_size=4)
    assert figures["pairs"] == 5 and figures["skipped_unpaired"] == 1
    # scored across groups in batches: the same figures as one group at a time
    one_by_one = evaluate(str(tiny_reward_model), str(data), batch_size=1)
    assert figures["accuracy"] == one_by_one["accuracy"]
    assert figures["mean_margin"] == pytest.approx(one_by_one["mean_margin"], abs=1e-5)


def test_a_reward_model_folder_as_the_model_is_a_warm_start_keeping_its_head(tiny_reward_model):
    from common.config import parse_args
    from reward_model.config import RMStageConfig
    from reward_model.train import build_model, warm_start

    cfg = parse_args(RMStageConfig, ["--config", str(REPO / "configs/reward_model/tiny.yaml"), "--model",
                                     str(tiny_reward_model), "--head_init", "zero", "--finetune", "full"])
    assert warm_start(str(tiny_reward_model)) and not warm_start("tiny-random")
    model, _ = build_model(cfg)
    saved, _ = load_model_and_tokenizer(str(tiny_reward_model), model_class=AutoModelForSequenceClassification,
                                        num_labels=1)
    assert torch.count_nonzero(model.score.weight) > 0  # head_init zero does not wipe a trained head
    assert torch.equal(model.score.weight, saved.score.weight)


def test_the_hash_split_keeps_every_prompt_on_its_side_as_labels_are_added():
    from common.data.preferences import PreferenceGroup, split_by_prompt

    def groups(n):
        return [PreferenceGroup([{"role": "user", "content": f"prompt {i}"}], ["a", "b"], [1, 2]) for i in range(n)]

    def held(gs, method):
        return {g.prompt[0]["content"] for g in split_by_prompt(gs, 0.2, seed=7, method=method)[1]}

    round1, round2 = held(groups(200), "hash"), held(groups(400), "hash")
    assert round1 == {p for p in round2 if int(p.split()[1]) < 200}  # round 1's prompts keep their side
    assert 0.12 < len(round2) / 400 < 0.28  # about the share
    shuffled = held(groups(200), "shuffle"), held(groups(400), "shuffle")
    assert shuffled[0] != {p for p in shuffled[1] if int(p.split()[1]) < 200}  # why the loop needs hash
    with pytest.raises(ValueError, match="val_split must be"):
        split_by_prompt(groups(4), 0.2, 0, "random")


# --- ODIN: a quality head and a length head (heads: odin)

FILLER = ["also", "so", "well", "then", "yes", "ok", "now", "sure"]


def polite_or_rude(rng: random.Random, total: int, polite: bool, filler: int) -> str:
    """'It is 42.' + `filler` filler words + the cue: the length varies, the quality is the last words."""
    return f"It is {total}." + "".join(" " + rng.choice(FILLER) for _ in range(filler)) + (
        " Glad to help." if polite else " Go away now.")


def length_biased_preferences(path: Path, n: int, seed: int, chosen_longer: float | None, mislabelled: float) -> list[dict]:
    """Pairs that differ in quality (polite over rude) and in length. `chosen_longer`: the share of pairs whose
    chosen reply is the longer one (7–12 filler words against 0–5), None = both lengths drawn alike (0–12);
    `mislabelled`: the share that prefer the rude reply — labels only length can explain, as annotators'
    taste for length would."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.randint(2, 999), rng.randint(2, 999)
        if chosen_longer is None:
            long_chosen, short_rejected = rng.randint(0, 12), rng.randint(0, 12)
        else:
            longer, shorter = rng.randint(7, 12), rng.randint(0, 5)
            long_chosen, short_rejected = (longer, shorter) if rng.random() < chosen_longer else (shorter, longer)
        polite_chosen = rng.random() >= mislabelled
        rows.append({"prompt": f"What is {a} plus {b}?",
                     "chosen": polite_or_rude(rng, a + b, polite_chosen, long_chosen),
                     "rejected": polite_or_rude(rng, a + b, not polite_chosen, short_rejected)})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def test_odin_quality_head_ranks_by_quality_without_the_length_shortcut(tiny_model_dir, tmp_path, one_thread):
    from common.stats import spearman
    from reward_model.data import response_tokens

    train = tmp_path / "train.jsonl"
    length_biased_preferences(train, 240, seed=0, chosen_longer=0.75, mislabelled=0.15)
    # held out: polite always wins, lengths drawn independently of it (so about half the pairs reverse the bias)
    held_out = length_biased_preferences(tmp_path / "held_out.jsonl", 150, seed=1, chosen_longer=None, mislabelled=0.0)
    figures = {}
    for heads, steps in (("single", 100), ("odin", 250)):  # ODIN's heads take longer to settle their roles
        main(["--config", TINY, "--model", str(tiny_model_dir), "--output_root", str(tmp_path / heads),
              "--data", f"[{{path: {train}}}]", "--heads", heads, "--head_init", "normal", "--max_steps", str(steps),
              "--eval_steps", str(steps), "--save_steps", str(steps), "--logging_steps", "50", "--batch_size", "8",
              "--learning_rate", "0.01", "--val_fraction", "0.2"])
        figures[heads] = summary(tmp_path / heads / "tiny")
    # the validation split (held-out prompts of the biased distribution): the single head has learnt length,
    # ODIN's quality head is decorrelated from it and its length head took it
    single, odin = figures["single"]["eval_length_spearman"], figures["odin"]["eval_length_spearman"]
    assert single > 0.3 and abs(odin) < 0.3 and single - abs(odin) > 0.2, (single, odin)
    assert figures["odin"]["eval_length_head/length_spearman"] > 0.8, figures["odin"]

    def score(model: Path, head: str | None = None):
        scorer = load_reward_scorer(str(model), head=head)
        prompts = [r["prompt"] for r in held_out]
        chosen, rejected = (scorer(prompts, [r[side] for r in held_out]).numpy() for side in ("chosen", "rejected"))
        lengths = {side: [response_tokens(scorer.tokenizer, r[side]) for r in held_out] for side in ("chosen", "rejected")}
        # ρ with length among replies of one quality: what length alone does to the score
        within = (spearman(chosen.tolist(), lengths["chosen"]) + spearman(rejected.tolist(), lengths["rejected"])) / 2
        reversed_ = [c < r for c, r in zip(lengths["chosen"], lengths["rejected"])]
        wins = chosen > rejected
        return within, wins.mean(), wins[reversed_].mean()

    single_within, _, _ = score(tmp_path / "single/tiny/model")
    quality_within, accuracy, reversed_accuracy = score(tmp_path / "odin/tiny/model")  # the default head: quality
    length_within, _, _ = score(tmp_path / "odin/tiny/model", head="length")
    assert quality_within < single_within - 0.3 and length_within > 0.8, (single_within, quality_within, length_within)
    assert accuracy > 0.8 and reversed_accuracy > 0.8, (accuracy, reversed_accuracy)
