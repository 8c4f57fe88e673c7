"""Read a model before trusting a figure: a chat page (Gradio) and a terminal chat, streaming tokens.

Any model spec loads (`default`, a run's `model/` folder — full weights or a LoRA adapter —, an
export folder, a quantized copy). The chat template is the model's own; tokens stream through
transformers' `TextIteratorStreamer` while `generate` runs in a thread. With two or more models the
page shows them side by side, each answering the same message with its own history
(`python -m evaluation.chat --run runs/evaluation/<name>` opens an evaluation's policies so).

    python -m serving chat --model default                 # the page, http://127.0.0.1:7861
    python -m serving chat --model default --terminal      # a terminal chat (reads stdin; a pipe works)

The page is built by `build_app` and launched only under `__main__`: tests import it without serving.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TextIO

import torch

from common.data import Message
from serving.folders import ServingError


@dataclass
class ChatModel:
    """A loaded model to chat with, under the name the page shows."""

    name: str
    model: object
    tokenizer: object


@dataclass(frozen=True)
class Decoding:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy: the same message gets the same reply


GREEDY = Decoding()


def load_chat_model(name: str, spec: str) -> ChatModel:
    from common.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(spec)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    return ChatModel(name, model.to(device).eval(), tokenizer)


def stream_reply(chat: ChatModel, messages: list[Message], decoding: Decoding = GREEDY) -> Iterator[str]:
    """Yield the reply to `messages` as it grows (the whole text so far, each time a token arrives)."""
    from transformers import TextIteratorStreamer

    tokenizer = chat.tokenizer
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True).to(chat.model.device)
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    sampling = ({"do_sample": True, "temperature": decoding.temperature, "top_p": 1.0, "top_k": 0}
                if decoding.temperature > 0 else {"do_sample": False})
    kwargs = dict(**inputs, streamer=streamer, max_new_tokens=decoding.max_new_tokens,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **sampling)
    worker = threading.Thread(target=_generate, args=(chat.model, kwargs, streamer), daemon=True)
    worker.start()
    text = ""
    for piece in streamer:
        text += piece
        yield text
    worker.join()


@torch.no_grad()
def _generate(model, kwargs: dict, streamer) -> None:
    try:
        model.generate(**kwargs)
    except Exception:
        streamer.end()  # the reader stops instead of waiting forever; the error is raised in this thread
        raise


def interleave(streams: list[Iterator[str]]) -> Iterator[list[str]]:
    """Advance every stream in turn; yield all their latest texts whenever one of them grew."""
    latest = [""] * len(streams)
    live = list(range(len(streams)))
    while live:
        for i in list(live):
            try:
                latest[i] = next(streams[i])
            except StopIteration:
                live.remove(i)
                continue
            yield list(latest)


def as_messages(history: list[dict]) -> list[Message]:
    """A Gradio chatbot's history → chat messages (Gradio 6 sends content as a list of text parts)."""
    out = []
    for turn in history:
        content = turn["content"]
        if isinstance(content, list):
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        out.append({"role": turn["role"], "content": str(content)})
    return out


def respond(chats: list[ChatModel], message: str, histories: list[list[dict]],
            decoding: Decoding = GREEDY) -> Iterator[tuple[str, ...]]:
    """The page's handler: every model answers `message` after its own history; yields ("", *histories)
    as the replies grow (the first clears the message box)."""
    if not message.strip():
        yield ("", *histories)
        return
    histories = [[*as_messages(h), {"role": "user", "content": message}] for h in histories]
    streams = [stream_reply(c, h, decoding) for c, h in zip(chats, histories)]
    yield ("", *histories)
    for texts in interleave(streams):
        yield ("", *[[*h, {"role": "assistant", "content": t}] for h, t in zip(histories, texts)])


def build_app(chats: list[ChatModel], decoding: Decoding = GREEDY, title: str = "rlhfkit chat"):
    """The page: one chat column per model, one message box answered by all of them."""
    import gradio as gr

    with gr.Blocks(title=title) as app:
        gr.Markdown(f"### {title}\n" + " · ".join(f"**{c.name}**" for c in chats)
                    + f" — {'greedy' if decoding.temperature == 0 else f'temperature {decoding.temperature:g}'}, "
                      f"up to {decoding.max_new_tokens} new tokens")
        with gr.Row():
            boards = [gr.Chatbot(label=c.name, elem_id=f"chat-{i}", height=480) for i, c in enumerate(chats)]
        with gr.Row():
            box = gr.Textbox(placeholder="Write a message and press Enter", show_label=False, scale=6, elem_id="message")
            send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
            clear = gr.Button("Clear", scale=1, elem_id="clear")

        def handler(message, *histories):
            yield from respond(chats, message, list(histories), decoding)

        for trigger in (box.submit, send.click):
            trigger(handler, [box, *boards], [box, *boards])
        clear.click(lambda: [[] for _ in boards], None, boards)
    return app


def terminal_chat(chat: ChatModel, lines: Iterable[str], out: TextIO, decoding: Decoding = GREEDY) -> int:
    """Chat on a terminal or a pipe: each input line is a message, each reply streams to `out`.
    `/reset` forgets the conversation; the end of input ends it. Returns the number of replies."""
    history: list[Message] = []
    replies = 0
    for line in lines:
        message = line.strip()
        if not message:
            continue
        if message == "/reset":
            history = []
            out.write("(conversation cleared)\n")
            continue
        history.append({"role": "user", "content": message})
        out.write(f"{chat.name}: ")
        shown = ""
        for text in stream_reply(chat, history, decoding):
            out.write(text[len(shown):])
            out.flush()
            shown = text
        out.write("\n")
        out.flush()
        history.append({"role": "assistant", "content": shown})
        replies += 1
    return replies


def open_chat(specs: list[tuple[str, str]], decoding: Decoding = GREEDY, *, terminal: bool = False,
              port: int = 7861, title: str = "rlhfkit chat") -> None:
    """Load the (name, spec) models and serve the page on 127.0.0.1:`port` (or, with one model, the terminal chat)."""
    if terminal and len(specs) != 1:
        raise ServingError("--terminal chats with one model; the page shows several side by side")
    chats = [load_chat_model(name, spec) for name, spec in specs]
    if terminal:
        if sys.stdin.isatty():
            print(f"chatting with {chats[0].name} — /reset clears, Ctrl-D ends")
        terminal_chat(chats[0], sys.stdin, sys.stdout, decoding)
        return
    build_app(chats, decoding, title).queue().launch(server_name="127.0.0.1", server_port=port)
