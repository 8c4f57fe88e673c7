"""BCQ on a tiny local model: the target network moves by Polyak averaging, and on a toy task
with a known best response, BCQ's constrained decoding beats the behaviour policy."""

from __future__ import annotations

import random

import pytest
import torch

from bcq_offline.config import BCQStageConfig
from bcq_offline.data import LoggedResponse
from bcq_offline.decode import constrained_generate
from bcq_offline.model import build_bcq_model
from bcq_offline.trainer import BCQTrainer, encode_records
from common.config import parse_args
from common.models import load_model_and_tokenizer
from common.models.lora import LoraSettings

# logged responses to every prompt, each with its reward: the best one is known ("yes")
REWARD = {"yes": 1.0, "no": 0.0, "maybe": 0.2, "ok": 0.0}
PROMPTS = [[{"role": "user", "content": f"Tell me about {w}."}] for w in ("cats", "rain", "maps", "tea")]


def make_trainer(model_dir, *overrides: str) -> BCQTrainer:
    cfg = parse_args(BCQStageConfig, ["--model", str(model_dir), "--precision", "fp32", "--learning_rate", "1e-2", "--tau", "0.3",
                                      "--polyak", "0.05", "--batch_size", "8", *overrides])
    torch.manual_seed(0)
    lm, tok = load_model_and_tokenizer(str(model_dir))
    model = build_bcq_model(lm, cfg.q_trunk, cfg.q_init_scale, LoraSettings(rank=4, alpha=8, dropout=0.0, layers=cfg.lora.layers),
                            q_head=cfg.q_head)
    return BCQTrainer(cfg, model, tok)


def test_batch_layout_puts_the_reward_state_positions_where_the_trainer_reads_them(tiny_model_dir):
    trainer = make_trainer(tiny_model_dir)
    records = [LoggedResponse(PROMPTS[0], "yes", 1.0), LoggedResponse(PROMPTS[1], "maybe so", 0.2)]
    b = encode_records(trainer.tokenizer, records, max_response_tokens=16)
    eos = trainer.tokenizer.eos_token_id
    for i, r in enumerate(records):
        ids = trainer.tokenizer(r.response, add_special_tokens=False)["input_ids"] + [eos]
        n = int(b.response_mask[i].sum())
        assert b.responses[i, :n].tolist() == ids  # response then EOS, right-padded
        assert b.attention_mask[i, b.prompt_len - 1] == 1  # the state s_0 is the prompt's last token
    cut = encode_records(trainer.tokenizer, records, max_response_tokens=2)
    assert cut.response_mask.sum(1).tolist() == [2, 2]


@pytest.mark.parametrize("q_trunk,q_head", [("shared", "full"), ("separate", "full"), ("shared", "bilinear")])
def test_target_network_moves_by_polyak_averaging(tiny_model_dir, q_trunk, q_head):
    trainer = make_trainer(tiny_model_dir, "--q_trunk", q_trunk, "--q_head", q_head)
    before = {k: v.clone() for k, v in trainer.target.items()}
    online_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert before.keys() == online_before.keys()
    if q_trunk == "separate":
        assert any("lora_" in k for k in before) and "q_head.weight" in before
    elif q_head == "full":
        assert set(before) == {"q_head.weight", "q_head.bias"}
    else:  # M and the per-token bias; G's output embeddings stay G's
        assert set(before) == {"q_head.proj.weight", "q_head.bias"}
    records = [LoggedResponse(p, w, r) for p in PROMPTS for w, r in REWARD.items()]
    stats = trainer.step(records[:8])
    assert stats["loss/td"] > 0
    online_after = {n: p.detach() for n, p in trainer.model.named_parameters() if p.requires_grad}
    changed = [k for k in before if not torch.equal(online_before[k], online_after[k])]
    assert changed, "the online Q network trained"
    for k in changed:  # θ' = (1 − ρ) θ'_old + ρ θ_new, with θ'_old = θ_old
        expected = 0.95 * before[k] + 0.05 * online_after[k]
        assert torch.allclose(trainer.target[k], expected, atol=1e-6), k
        assert not torch.equal(trainer.target[k], before[k])


def test_target_forward_computes_with_the_target_weights_and_leaves_the_online_ones(tiny_model_dir):
    import copy

    from bcq_offline.model import target_q

    trainer = make_trainer(tiny_model_dir, "--q_trunk", "separate")
    model = trainer.model
    target = {k: v + 0.05 * torch.randn_like(v) for k, v in trainer.target.items()}  # a target ≠ online
    online = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    b = trainer.batch([LoggedResponse(PROMPTS[0], "yes", 1.0), LoggedResponse(PROMPTS[1], "no", 0.0)])
    got = target_q(model, target, **b.inputs(), start=b.prompt_len - 1)
    reference = copy.deepcopy(model)  # the same network with the target tensors loaded for real
    with torch.no_grad():
        for n, p in reference.named_parameters():
            if n in target:
                p.copy_(target[n])
        want = reference(**b.inputs(), start=b.prompt_len - 1)
        plain = model(**b.inputs(), start=b.prompt_len - 1)
    assert torch.allclose(got, want, atol=1e-5) and not torch.allclose(got, plain, atol=1e-3)
    assert all(torch.equal(p, online[n]) for n, p in model.named_parameters() if p.requires_grad)


@pytest.mark.parametrize("q_head", ["full", "bilinear"])
def test_cached_states_give_the_same_loss_and_gradients_as_the_trunk_pass(tiny_model_dir, q_head):
    """The state cache is an optimisation only: same TD loss, statistics and head gradients."""
    trainer = make_trainer(tiny_model_dir, "--tau", "0.05", "--q_head", q_head)  # several allowed tokens per step
    assert trainer.cache is not None
    head = trainer.model.q_head
    weight = head.weight if q_head == "full" else head.proj.weight
    torch.manual_seed(1)
    with torch.no_grad():  # a target network ≠ the online one, and a Q that is not G's scaled logits
        weight.add_(0.02 * torch.randn_like(weight))
        trainer.target = {k: v + 0.05 * torch.randn_like(v) for k, v in trainer.target.items()}
    records = [LoggedResponse(p, w, r) for p in PROMPTS[:3] for w, r in [("yes", 1.0), ("maybe so, I think", 0.2)]]

    def run(fn):
        head.zero_grad()
        loss, stats = fn()
        loss.backward()
        return loss.detach(), stats, weight.grad.clone(), head.bias.grad.clone()

    full = run(lambda: trainer.loss(trainer.batch(records)))
    cached = run(lambda: trainer.cached_loss(records))
    assert len(trainer.cache) == len(records)
    assert max(c.valid.sum(-1).max().item() for c in trainer.cache.values()) > 1
    assert torch.allclose(full[0], cached[0], atol=1e-6)
    assert full[1].keys() == cached[1].keys()
    for key in full[1]:
        assert abs(full[1][key] - cached[1][key]) < 1e-5, key
    assert torch.allclose(full[2], cached[2], atol=1e-6) and torch.allclose(full[3], cached[3], atol=1e-6)
    assert full[2].abs().sum() > 0


@pytest.mark.parametrize("q_trunk,cache,q_head", [
    ("shared", "true", "full"), ("shared", "false", "full"), ("separate", "false", "full"), ("shared", "true", "bilinear"),
])
def test_bcq_decoding_beats_the_behaviour_policy_on_a_toy_task(tiny_model_dir, q_trunk, cache, q_head):
    trainer = make_trainer(tiny_model_dir, "--q_trunk", q_trunk, "--cache_states", cache, "--q_head", q_head)
    assert (trainer.cache is not None) == (cache == "true")
    records = [LoggedResponse(p, w, r) for p in PROMPTS for w, r in REWARD.items()]
    rng = random.Random(0)
    history = [trainer.step(rng.sample(records, 8)) for _ in range(100)]
    assert history[-1]["loss/td"] < history[0]["loss/td"]

    def mean_return(decoded):
        return sum(REWARD.get(d.response.strip(), 0.0) for d in decoded) / len(decoded)

    logged = sum(r.reward for r in records) / len(records)  # 0.3
    gen = torch.Generator().manual_seed(0)
    behaviour = constrained_generate(trainer.model, trainer.tokenizer, PROMPTS, 0.3, max_new_tokens=6,
                                     greedy=False, policy="behaviour", generator=gen)
    bcq = constrained_generate(trainer.model, trainer.tokenizer, PROMPTS, 0.3, max_new_tokens=6)
    assert mean_return(bcq) == 1.0, [d.response for d in bcq]
    assert mean_return(bcq) > max(logged, mean_return(behaviour))
    # BCQ's own estimate of its return is close to the return it gets (no runaway overestimation)
    assert all(abs(d.q_first - 1.0) < 0.2 for d in bcq), [d.q_first for d in bcq]
    assert all(len(d.allowed) == len(d.tokens) for d in bcq)


def test_constrained_decoding_never_leaves_the_allowed_set(tiny_model_dir):
    """With τ close to 1 only G's top token is allowed: BCQ decoding is G's greedy decoding."""
    trainer = make_trainer(tiny_model_dir)
    with torch.no_grad():  # make Q prefer something G does not
        trainer.model.q_head.bias.copy_(torch.randn_like(trainer.model.q_head.bias) * 100)
    bcq = constrained_generate(trainer.model, trainer.tokenizer, PROMPTS, 0.999999, max_new_tokens=5)
    greedy_g = constrained_generate(trainer.model, trainer.tokenizer, PROMPTS, 0.5, max_new_tokens=5,
                                    policy="behaviour")
    assert [d.tokens for d in bcq] == [d.tokens for d in greedy_g]
    assert all(n == 1 for d in bcq for n in d.allowed)


def test_behaviour_cloning_raises_the_likelihood_of_the_logged_responses(tiny_model_dir):
    from functools import partial

    from bcq_offline.behaviour import clone_behaviour, response_nll

    lm, tok = load_model_and_tokenizer(str(tiny_model_dir))
    records = [LoggedResponse(p, w, r) for p in PROMPTS for w, r in REWARD.items()]
    encode = partial(encode_records, tok, max_response_tokens=16)
    with torch.no_grad():
        before = response_nll(lm, encode(records)).item()
    g, losses = clone_behaviour(lm, encode, records, steps=20, batch_size=8, lr=1e-2,
                                lora=LoraSettings(rank=4, alpha=8, dropout=0.0), seed=0)
    with torch.no_grad():
        after = response_nll(g, encode(records)).item()
    assert len(losses) == 20 and after < before - 0.3, (before, after)  # measured 6.24 → 5.81
    assert not any("lora" in n for n, _ in g.named_parameters()), "the adapters are merged: G is a plain model"


def test_bf16_precision_trains_the_head(tiny_model_dir):
    """precision: bf16 runs the trunk and Q under bf16 autocast (cached and uncached paths)."""
    records = [LoggedResponse(p, w, r) for p in PROMPTS for w, r in REWARD.items()]
    for cache in ("true", "false"):
        trainer = make_trainer(tiny_model_dir, "--precision", "bf16", "--cache_states", cache)
        before = trainer.model.q_head.weight.detach().clone()
        stats = trainer.step(records[:8])
        assert torch.isfinite(torch.tensor(stats["loss/td"])) and stats["loss/td"] > 0
        assert not torch.equal(before, trainer.model.q_head.weight)
        assert trainer.model.q_head.weight.dtype == torch.float32  # weights stay fp32; only the matmuls drop


def test_a_saved_bilinear_model_reloads_with_the_same_q(tiny_model_dir, tmp_path):
    from bcq_offline.saving import load_bcq, save_bcq

    trainer = make_trainer(tiny_model_dir, "--q_head", "bilinear")
    records = [LoggedResponse(p, w, r) for p in PROMPTS for w, r in REWARD.items()]
    trainer.step(records[:8])
    save_bcq(trainer.model, trainer.tokenizer, {"base": str(tiny_model_dir), "q_trunk": "shared", "q_head": "bilinear",
                                                "tau": 0.3, "lora": {}}, tmp_path / "model")
    loaded, _, meta = load_bcq(tmp_path / "model")
    assert meta["q_head"] == "bilinear" and type(loaded.q_head) is type(trainer.model.q_head)
    b = trainer.batch(records[:2])
    with torch.no_grad():
        want = trainer.model(**b.inputs(), start=b.prompt_len - 1)
        got = loaded(**b.inputs(), start=b.prompt_len - 1)
    assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("greedy", [True, False])
def test_decoding_records_log_pi_t_greedy_or_sampled(tiny_model_dir, greedy):
    """Greedy or sampled, a reply's `logprob` is Σ_t log π_T(a_t | s_t) with π_T = softmax(Q / T) over
    the allowed tokens — checked against a teacher-forced pass over the decoded reply."""
    from bcq_offline.constraint import allowed_actions, constrain

    trainer = make_trainer(tiny_model_dir)
    model, tok, tau, temperature = trainer.model, trainer.tokenizer, 0.3, 0.7
    with torch.no_grad():  # a Q unlike G's logits, so that π_T is not G's distribution
        model.q_head.bias.copy_(torch.randn_like(model.q_head.bias))
    decoded = constrained_generate(model, tok, PROMPTS[:2], tau, max_new_tokens=5, greedy=greedy,
                                   temperature=temperature, generator=torch.Generator().manual_seed(0))
    for prompt, d in zip(PROMPTS[:2], decoded):
        prompt_ids = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
        ids = torch.tensor([list(prompt_ids) + d.tokens])  # (1, L)
        with torch.no_grad():
            hidden = model.trunk(ids, torch.ones_like(ids), torch.arange(ids.shape[1])[None], adapters=False)
            states = hidden[:, len(prompt_ids) - 1 : -1]  # (1, T, H): the states the reply's tokens were chosen in
            allowed = allowed_actions(model.behaviour_logprobs(states), tau)
            pi = torch.log_softmax(constrain(model(hidden=states), allowed) / temperature, dim=-1)
        expected = pi[0].gather(-1, torch.tensor(d.tokens)[:, None]).sum().item()
        assert d.logprob == pytest.approx(expected, abs=1e-4)
        assert d.logprob < 0  # greedy too: the decoding distribution's log-probability, not 0
