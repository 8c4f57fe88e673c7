"""The chat: replies stream token by token with the chat template applied (equal to the greedy reply
`common.models.generate.chat` gives), the terminal chat answers through a pipe, two models answer
side by side with their own histories, and the page in Debian's Chromium shows a streamed reply."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from common.models import load_model_and_tokenizer
from common.models.generate import chat as greedy_chat
from evaluation.chat import policies_of
from serving.chat import ChatModel, Decoding, build_app, interleave, respond, stream_reply, terminal_chat

from helpers.stages import REPO, free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
DECODING = Decoding(max_new_tokens=12)


@pytest.fixture(scope="module")
def tiny_chat(tiny_model_dir) -> ChatModel:
    model, tokenizer = load_model_and_tokenizer(str(tiny_model_dir))
    return ChatModel("tiny", model.eval(), tokenizer)


@pytest.fixture(scope="module")
def other_chat(other_tiny_model_dir) -> ChatModel:
    model, tokenizer = load_model_and_tokenizer(str(other_tiny_model_dir))
    return ChatModel("other", model.eval(), tokenizer)


def expected(chat: ChatModel, messages) -> str:
    return greedy_chat(chat.model, chat.tokenizer, messages, max_new_tokens=DECODING.max_new_tokens)


def test_a_reply_streams_and_ends_as_the_greedy_reply(tiny_chat):
    messages = [{"role": "user", "content": "What is 12 plus 30?"}]
    texts = list(stream_reply(tiny_chat, messages, DECODING))
    assert len(texts) > 1  # it grew piece by piece
    assert all(b.startswith(a) for a, b in zip(texts, texts[1:]))
    assert texts[-1].strip() == expected(tiny_chat, messages) != ""


def test_interleave_yields_every_streams_latest_text():
    steps = list(interleave([iter(["a", "ab", "abc"]), iter(["x"])]))
    assert steps == [["a", ""], ["a", "x"], ["ab", "x"], ["abc", "x"]]


def test_two_models_answer_side_by_side_each_with_its_own_history(tiny_chat, other_chat):
    histories = [[], []]
    for message in ("Hello!", "And then?"):
        *_, last = respond([tiny_chat, other_chat], message, histories, DECODING)
        box, *histories = last
        assert box == ""
    for chat, history in zip((tiny_chat, other_chat), histories):
        assert [t["role"] for t in history] == ["user", "assistant", "user", "assistant"]
        # the second reply saw the first exchange: the chat template over the whole history
        assert history[-1]["content"].strip() == expected(chat, history[:-1])
    assert histories[0][1]["content"] != histories[1][1]["content"]  # two models, two replies


def test_the_terminal_chat_answers_through_a_pipe(tiny_chat, tiny_model_dir):
    out = io.StringIO()
    assert terminal_chat(tiny_chat, iter(["Hello!", "", "/reset", "Hello!"]), out, DECODING) == 2
    lines = out.getvalue().splitlines()
    first = expected(tiny_chat, [{"role": "user", "content": "Hello!"}])
    assert lines == [f"tiny: {first}", "(conversation cleared)", f"tiny: {first}"]  # /reset forgot the first turn
    proc = subprocess.run([sys.executable, "-m", "serving", "chat", "--model", str(tiny_model_dir), "--terminal",
                           "--max_new_tokens", "12"], input="Hello!\n", capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [f"model: {first}"]


def test_bad_model_and_bad_run_are_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "serving", "chat", "--model", str(tmp_path / "none"), "--terminal"],
                          capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "none" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "evaluation.chat", "--run", str(tmp_path)], capture_output=True,
                          text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2 and "no config.yaml" in proc.stderr and proc.stderr.count("\n") == 1


def test_an_evaluation_recipe_names_the_policies_to_chat_with(tiny_model_dir, tmp_path):
    recipe = tmp_path / "eval.yaml"
    recipe.write_text(f"policies:\n  - {{name: sft, model: {tiny_model_dir}}}\n  - {{name: ppo, model: tiny-random}}\n")
    assert policies_of(None, str(recipe)) == [("sft", str(tiny_model_dir)), ("ppo", "tiny-random")]
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(recipe.read_text())
    assert policies_of(str(run), None) == policies_of(None, str(recipe))


@pytest.mark.slow
def test_the_page_in_chromium_streams_replies_from_two_models(tiny_chat, other_chat):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian's chromium is needed: apt-get install -y chromium"
    port = free_port()
    app = build_app([tiny_chat, other_chat], DECODING)
    app.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True)
    message = "What is 12 plus 30?"
    want = [expected(c, [{"role": "user", "content": message}]) for c in (tiny_chat, other_chat)]
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.set_default_timeout(120_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#message textarea").wait_for()
            # every text the first column's reply shows, as the page changes
            page.evaluate("""() => { window.seen = []; const root = document.querySelector('#chat-0');
                new MutationObserver(() => { const b = root.querySelectorAll('.bot');
                  if (b.length) window.seen.push(b[b.length - 1].innerText); })
                .observe(root, {subtree: true, childList: true, characterData: true}); }""")
            page.locator("#message textarea").fill(message)
            page.locator("#message textarea").press("Enter")
            for i, text in enumerate(want):
                page.wait_for_function(
                    "([sel, want]) => { const b = document.querySelectorAll(sel);"
                    " return b.length && b[b.length - 1].innerText.replace(/\\s+/g, ' ').trim() === want; }",
                    arg=[f"#chat-{i} .bot", " ".join(text.split())])
            assert page.locator("#chat-0 .user").first.inner_text().strip() == message
            shown = [" ".join(t.split()) for t in page.evaluate("window.seen")]
            final = " ".join(want[0].split())
            growing = [t for k, t in enumerate(shown) if t and (k == 0 or t != shown[k - 1])]
            first = next(k for k, t in enumerate(growing) if final.startswith(t))  # after Gradio's "Loading content"
            growing = growing[first:]
            assert len(growing) > 1 and growing[-1] == final, growing  # the reply appeared piece by piece, not at once
            assert all(final.startswith(t) for t in growing), (growing, final)
            browser.close()
    finally:
        app.close()
