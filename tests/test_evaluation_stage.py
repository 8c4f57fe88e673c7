"""`python -m evaluation` end to end on tiny models: every output, bad input before any sampling,
no finished-looking eval.json from a stopped run, and replies escaped in the HTML page."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from common.config import ConfigError
from common.data import DataError
from common.data.prompts import Prompt
from common.models import ModelNotFoundError
from evaluation.__main__ import main
from evaluation.policies import Reply
from evaluation.report import flat_figures, table, write_html

from helpers.stages import REPO

TINY = str(REPO / "configs/evaluation/tiny.yaml")


def policies(a, b) -> str:
    return f"[{{name: base, model: {a}}}, {{name: other, model: {b}}}]"


def eval_args(out: Path, a, b, *extra: str) -> list[str]:
    return ["--config", TINY, "--output_root", str(out), "--policies", policies(a, b), *extra]


def test_two_tiny_policies_and_the_tiny_reward_model_write_every_output(tiny_model_dir, other_tiny_model_dir,
                                                                       tiny_reward_model, tmp_path, capsys):
    proc = subprocess.run(
        [sys.executable, "-m", "evaluation", *eval_args(tmp_path, tiny_model_dir, other_tiny_model_dir),
         "--reward_model", str(tiny_reward_model), "--judges.reward_model", "true"],
        cwd=REPO, capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "tiny"
    assert {"eval.json", "samples.jsonl", "report.png", "report.html", "config.yaml"} <= {p.name for p in run.iterdir()}
    assert (run / "wandb").is_dir()  # the same figures went to W&B (offline)
    report = json.loads((run / "eval.json").read_text())
    assert report["status"] == "complete" and report["baseline"] == "base" and report["config"]["seed"] == 42
    assert report["prompts"]["total"] == 8 and set(report["prompts"]["by_domain"]) == {"general", "code"}
    cmp = report["comparisons"]["other"]
    assert cmp["pairs"] == 16
    assert 0 <= cmp["win_rate"]["low"] <= cmp["win_rate"]["mean"] <= cmp["win_rate"]["high"] <= 1
    lc = cmp["lc_win_rate"]  # a number with its interval, or withheld with the reason (too few pairs on one side)
    assert (lc["mean"] is None and lc["withheld"]) or 0 <= lc["low"] <= lc["mean"] <= lc["high"] <= 1
    assert set(cmp["by_domain"]) == {"general", "code"} and "mixed_win_rate" in cmp
    for name in ("base", "other"):
        s = report["policies"][name]
        assert {"reward_model", "mixed_reward", "components", "kl", "length", "eos_rate", "hollow"} <= set(s)
        assert {"duplicate_share", "distinct_2", "self_bleu", "zero_overlap_share", "rm_length_spearman"} <= set(s["hollow"])
    assert isinstance(report["warnings"], list) and "signs of a hollow policy" in proc.stdout
    # the judge's sanity suite: the figures saved with it (and, with 2+ references among the prompts, run here)
    sanity = report["reward_model_sanity"]
    assert list(sanity["saved"]) == [str(tiny_reward_model)] and "judge's sanity suite (saved with" in proc.stdout
    assert sanity["heldout"] is None or sanity["heldout"]["source"] == "held-out prompts, reference answers"
    assert report["policies"]["base"]["kl"]["mean"] == 0.0  # the baseline is the KL reference
    assert report["policies"]["other"]["kl"]["mean"] != 0.0
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 8 * 2 and {"rm", "mixed", "accuracy", "diversity", "efficiency", "logprob",
                                        "ref_logprob"} <= set(rows[0])
    # the printed table and the W&B figures agree with eval.json
    assert "win vs base" in proc.stdout and f"{100 * cmp['win_rate']['mean']:.0f}%" in proc.stdout
    # a finished evaluation is not overwritten by accident
    with pytest.raises(Exception, match="already holds a finished evaluation"):
        main(eval_args(tmp_path, tiny_model_dir, other_tiny_model_dir))


def test_the_kl_has_one_definition_whatever_the_decoding(tiny_model_dir, other_tiny_model_dir, tmp_path):
    """KL = mean Σ_t [log π_T − log π_ref,T], both untruncated: top-p < 1 only decides which replies
    are drawn, so a policy with the reference's weights has KL 0 and any other policy — the baseline
    included — is scored against the reference."""
    three = (f"[{{name: base, model: {tiny_model_dir}}}, {{name: other, model: {other_tiny_model_dir}}}, "
             f"{{name: twin, model: {tiny_model_dir}}}]")
    main(["--config", TINY, "--output_root", str(tmp_path), "--policies", three, "--baseline", "other",
          "--kl_reference", "base", "--top_p", "0.5", "--max_prompts", "4"])
    report = json.loads((tmp_path / "tiny/eval.json").read_text())
    kl = {name: s["kl"]["mean"] for name, s in report["policies"].items()}
    assert kl["base"] == 0.0  # the reference itself
    assert abs(kl["other"]) > 0.1, kl  # a top-p < 1 baseline that is not the reference
    # the reference's weights under another name, teacher-forced by the reference: 0 up to rounding
    # (a nucleus-renormalised log π would add −log(nucleus mass) per token)
    assert abs(kl["twin"]) < 1e-3, kl


def test_sampling_is_seeded_and_greedy_gives_one_reply(tiny_model_dir, other_tiny_model_dir, tmp_path):
    main(eval_args(tmp_path, tiny_model_dir, other_tiny_model_dir, "--run_name", "a"))
    main(eval_args(tmp_path, tiny_model_dir, other_tiny_model_dir, "--run_name", "b"))
    a, b = ((tmp_path / n / "samples.jsonl").read_text() for n in "ab")
    assert [json.loads(x)["reply"] for x in a.splitlines()] == [json.loads(x)["reply"] for x in b.splitlines()]
    main(eval_args(tmp_path, tiny_model_dir, other_tiny_model_dir, "--run_name", "g", "--decoding", "greedy",
                   "--samples_per_prompt", "1"))
    report = json.loads((tmp_path / "g/eval.json").read_text())
    assert report["comparisons"]["other"]["pairs"] == 8
    with pytest.raises(ConfigError, match="greedy gives one reply per prompt"):
        main(eval_args(tmp_path, tiny_model_dir, other_tiny_model_dir, "--decoding", "greedy"))


def test_further_readings_are_judged_and_reported_beside_the_main_decoding(tiny_model_dir, other_tiny_model_dir,
                                                                           tiny_reward_model, tmp_path, capsys):
    """also_decode: every policy read again greedily and at T 0.7, one reply per prompt; the reward model
    and the text judges run on those replies, the KL does not; eval.json, the table, the trackers'
    figures and samples-<name>.jsonl carry each reading, and a greedy reading equals a greedy run's."""
    readings = "[{name: greedy, decoding: greedy}, {name: t0.7, decoding: sample, temperature: 0.7}]"
    main(eval_args(tmp_path, tiny_model_dir, other_tiny_model_dir, "--run_name", "r", "--also_decode", readings,
                   "--reward_model", str(tiny_reward_model), "--judges.reward_model", "true"))
    run = tmp_path / "r"
    report = json.loads((run / "eval.json").read_text())
    assert list(report["decodings"]) == ["greedy", "t0.7"]
    for name, body in report["decodings"].items():
        assert body["comparisons"]["other"]["pairs"] == 8  # one reply per prompt
        assert "kl" not in body["policies"]["other"] or body["policies"]["other"]["kl"] is None
        assert {"reward_model", "mixed_reward", "hollow"} <= set(body["policies"]["other"])
        rows = [json.loads(x) for x in (run / f"samples-{name}.jsonl").read_text().splitlines()]
        assert len(rows) == 16 and {"rm", "mixed"} <= set(rows[0])
    assert report["comparisons"]["other"]["pairs"] == 16  # the main reading: 2 samples a prompt
    out = capsys.readouterr().out
    assert "read at greedy (greedy, one reply per prompt)" in out and "read at t0.7 (sampled at T 0.7" in out
    figures = flat_figures(report)
    assert "eval/greedy/other/win_rate" in figures and "eval/t0.7/other/win_rate" in figures
    assert "eval/other/win_rate" in figures
    # the greedy reading is the greedy run's replies
    main(eval_args(tmp_path, tiny_model_dir, other_tiny_model_dir, "--run_name", "g", "--decoding", "greedy",
                   "--samples_per_prompt", "1"))
    greedy = [json.loads(x)["reply"] for x in (tmp_path / "g/samples.jsonl").read_text().splitlines()]
    assert greedy == [json.loads(x)["reply"] for x in (run / "samples-greedy.jsonl").read_text().splitlines()]
    with pytest.raises(ConfigError, match="a reading may not share a policy's name"):
        main(eval_args(tmp_path, tiny_model_dir, other_tiny_model_dir, "--also_decode", "[{name: other}]"))


@pytest.mark.parametrize("change, error, match", [
    (["--policies", "[{name: base, model: /nowhere/model}, {name: other, model: tiny-random}]"], ModelNotFoundError,
     r"policy 'base': model '/nowhere/model' not found"),
    (["--baseline", "sft"], ConfigError, r"baseline 'sft' is not among the policies \(base, other\)"),
    (["--judges.reward_model", "true", "--reward_model", "{other}"], FileNotFoundError,
     r"reward_model: .* is not a reward model \(no reward_config.json\)"),
    (["--prompts", "[{path: {bad}}]"], DataError, r"bad\.jsonl:2: unknown domain 'astrology'"),
])
def test_bad_input_is_one_clear_error_before_anything_is_written(change, error, match, tiny_model_dir,
                                                                 other_tiny_model_dir, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "hi", "domain": "general"}\n{"prompt": "stars?", "domain": "astrology"}\n')
    change = [c.replace("{bad}", str(bad)).replace("{other}", str(other_tiny_model_dir)) for c in change]
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        main(eval_args(out, tiny_model_dir, other_tiny_model_dir, *change))
    assert not out.exists()


def test_policies_with_another_tokenizer_cannot_be_compared_by_kl(tiny_model_dir, tmp_path):
    from common.models import DEFAULT_MODEL, builtin_model_dir

    if not builtin_model_dir(DEFAULT_MODEL).is_dir():
        pytest.skip("the default model is installed by make setup")
    with pytest.raises(ConfigError, match=r"policy 'other' .* uses another tokenizer than the KL reference 'base'"):
        main(eval_args(tmp_path / "out", tiny_model_dir, DEFAULT_MODEL))
    assert not (tmp_path / "out").exists()
    main(eval_args(tmp_path / "out", tiny_model_dir, DEFAULT_MODEL, "--judges.kl", "false", "--max_prompts", "2",
                   "--max_new_tokens", "4"))  # without the KL judge they can
    assert "kl" not in json.loads((tmp_path / "out/tiny/eval.json").read_text())["policies"]["other"]


def test_a_run_stopped_half_way_leaves_no_finished_looking_eval_json(tiny_model_dir, other_tiny_model_dir, tmp_path,
                                                                     monkeypatch):
    main(eval_args(tmp_path, tiny_model_dir, other_tiny_model_dir))
    assert (tmp_path / "tiny/eval.json").is_file()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("evaluation.evaluate.summarize", crash)
    with pytest.raises(KeyboardInterrupt):
        main(eval_args(tmp_path, tiny_model_dir, other_tiny_model_dir, "--overwrite", "true"))
    assert not (tmp_path / "tiny/eval.json").exists()  # the old one went when the new run started


def test_the_html_page_escapes_replies_prompts_and_names(tmp_path):
    prompt = Prompt([{"role": "user", "content": "<b>bold?</b>"}], "general", "<i>ref</i>", "x:1")
    replies = [Reply("base", 0, 0, "<script>alert(1)</script>", [1, 2], True, scores={"rm": 0.5}),
               Reply("<img src=x onerror=alert(2)>", 0, 0, "fine & dandy", [1], False, scores={"rm": -0.5})]
    ci = {"mean": 0.5, "low": 0.1, "high": 0.9, "n": 1}
    report = {"run_name": "<svg/onload=alert(3)>", "baseline": "base", "prompts": {"total": 1},
              "policies": {"base": {"length": ci, "eos_rate": ci},
                           "<img src=x onerror=alert(2)>": {"length": ci, "eos_rate": ci}},
              "comparisons": {}}
    page = write_html(tmp_path, report, replies, [prompt], None).read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img" not in page and "<svg" not in page and "<b>bold" not in page and "<i>ref" not in page
    assert "fine &amp; dandy" in page and "base" in table(report)
