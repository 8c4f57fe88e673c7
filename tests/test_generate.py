"""Batched sampling for evaluation (common/models/generate.py): the sampler's own choices and log-probabilities."""

from __future__ import annotations

import pytest
import torch

from common.models import load_model_and_tokenizer
from common.models.generate import RecordingSampler, encode_prompts, response_logprobs, sample_batch


def test_the_sampler_draws_from_the_tempered_distribution():
    logits = torch.log(torch.tensor([[0.2, 0.3, 0.5]])).repeat(20000, 1)
    gen = torch.Generator().manual_seed(0)
    sampler = RecordingSampler(True, 1.0, 1.0, gen)
    picks = sampler(None, logits).argmax(-1)
    freq = torch.bincount(picks, minlength=3).float() / picks.numel()
    assert torch.allclose(freq, torch.tensor([0.2, 0.3, 0.5]), atol=0.01)
    assert torch.allclose(sampler.steps[0], torch.log(torch.tensor([0.2, 0.3, 0.5]))[picks], atol=1e-6)
    # temperature 0.5 squares the probabilities (renormalised): 0.04, 0.09, 0.25 → /0.38
    cold = RecordingSampler(True, 0.5, 1.0, gen)(None, logits).argmax(-1)
    freq = torch.bincount(cold, minlength=3).float() / cold.numel()
    assert torch.allclose(freq, torch.tensor([0.04, 0.09, 0.25]) / 0.38, atol=0.01)


def test_top_p_draws_from_the_nucleus_and_records_the_untruncated_logprob():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]])).repeat(5000, 1)
    sampler = RecordingSampler(True, 1.0, 0.6, torch.Generator().manual_seed(1))
    picks = sampler(None, logits).argmax(-1)
    # 0.4 alone is below 0.6, so 0.3 joins; 0.2 starts past 0.7: the nucleus is {0.4, 0.3}, renormalised
    assert set(picks.tolist()) == {2, 3}
    assert (picks == 3).float().mean() == pytest.approx(0.4 / 0.7, abs=0.02)
    # recorded: log π_T of the pick under the whole distribution (log 0.4), not the nucleus's log(0.4 / 0.7)
    assert torch.allclose(sampler.steps[0][picks == 3], torch.tensor(0.4).log(), atol=1e-6)
    assert torch.allclose(sampler.steps[0][picks == 2], torch.tensor(0.3).log(), atol=1e-6)


def test_greedy_takes_the_argmax():
    logits = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    sampler = RecordingSampler(False, 1.0, 1.0, None)
    out = sampler(None, logits)
    assert out.argmax(-1).tolist() == [1, 0] and torch.isinf(out).sum() == 4
    assert torch.allclose(sampler.steps[0], torch.log_softmax(logits, -1).max(-1).values)


@pytest.mark.parametrize("do_sample, top_p", [(True, 1.0), (True, 0.5), (False, 1.0)])
def test_recorded_logprobs_equal_a_teacher_forced_pass_at_the_temperature(do_sample, top_p, tiny_model_dir):
    """Sampled, nucleus-sampled or greedy: each reply records log π_T(reply), the temperature-T
    softmax untruncated — what a teacher-forced pass at T gives (the evaluation's KL needs one definition)."""
    model, tok = load_model_and_tokenizer(str(tiny_model_dir))
    prompts = encode_prompts(tok, [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "What is 12 plus 30?"}]])
    gen = torch.Generator().manual_seed(0)
    groups = sample_batch(model, tok, prompts, 3, 12, do_sample, 0.7, top_p, gen)
    replies = [r for g in groups for r in g]
    assert len(replies) == 6 and all(r.tokens for r in replies)
    forced = response_logprobs(model, [p for p in prompts for _ in range(3)], [r.tokens for r in replies],
                               tok.pad_token_id, temperature=0.7, batch_size=4)
    assert forced == pytest.approx([r.logprob for r in replies], abs=1e-4)
    assert all(r.logprob < 0 for r in replies)  # greedy replies too: not a deterministic policy's 0
    again = sample_batch(model, tok, prompts, 3, 12, do_sample, 0.7, top_p, torch.Generator().manual_seed(0))
    assert [r.tokens for g in again for r in g] == [r.tokens for r in replies]  # seeded
