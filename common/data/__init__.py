"""Record readers shared by the stages: JSONL (optionally gzipped) and the HH dialogue format.

Every reader reports problems as `DataError("<file>:<line>: <problem>")` and reads the whole
file before a stage starts work, so a bad row stops a run before anything is written.

Chat records are lists of `{"role": ..., "content": ...}` messages. Three row shapes become one:
- `{"messages": [...]}`                                 chat
- `{"prompt": str | [...], "completion": str | [...]}`   prompt/completion
- `{"chosen": "\\n\\nHuman: ...\\n\\nAssistant: ..."}`   HH dialogue (its `chosen` side)
"""

from __future__ import annotations

import functools
import gzip
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")
FORMATS = ("auto", "messages", "prompt_completion", "hh")

Message = dict[str, str]


class DataError(ValueError):
    """A data file or row that cannot be used; the message starts with `file:line:`."""


def read_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(line_number, object)` for each non-blank line; `.gz` files are decompressed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{path}:{line_no}: invalid JSON ({err.msg} at column {err.colno})") from None
                if not isinstance(obj, dict):
                    raise DataError(f"{path}:{line_no}: expected a JSON object, got {type(obj).__name__}")
                yield line_no, obj
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason})") from None
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read ({err})") from None


_HH_TURN = re.compile(r"\n\n(Human|Assistant):")


def parse_hh_dialogue(text: str, where: str) -> list[Message]:
    """`"\\n\\nHuman: a\\n\\nAssistant: b ..."` → messages (user/assistant, in order).

    Text between markers keeps its inner newlines; surrounding whitespace is stripped.
    """
    if not isinstance(text, str):
        raise DataError(f"{where}: HH dialogue must be a string, got {type(text).__name__}")
    parts = _HH_TURN.split(text)
    # parts = [prefix, speaker1, text1, speaker2, text2, ...]
    if len(parts) < 3 or parts[0].strip():
        raise DataError(f"{where}: not an HH dialogue (must start with '\\n\\nHuman:')")
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = "user" if speaker == "Human" else "assistant"
        messages.append({"role": role, "content": content.strip()})
    return messages


def check_messages(messages: Any, where: str, field: str) -> list[Message]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: '{field}' must be a non-empty list of messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{where}: {field}[{i}] must be an object with 'role' and 'content'")
        if m["role"] not in ROLES:
            raise DataError(f"{where}: {field}[{i}] has unknown role {m['role']!r} (expected one of {', '.join(ROLES)})")
        if not isinstance(m["content"], str):
            raise DataError(f"{where}: {field}[{i}].content must be a string")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _as_messages(value: Any, role: str, where: str, field: str) -> list[Message]:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return check_messages(value, where, field)


def parse_prompt(value: Any, where: str) -> list[Message]:
    """A row's `prompt`: text (one user turn) or chat messages ending with a user turn."""
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: 'prompt' is empty")
        return [{"role": "user", "content": value}]
    messages = check_messages(value, where, "prompt")
    if messages[-1]["role"] != "user":
        raise DataError(f"{where}: a chat 'prompt' must end with a user message")
    return messages


def require(row: dict[str, Any], keys: tuple[str, ...], where: str) -> None:
    for key in keys:
        if key not in row:
            raise DataError(f"{where}: missing field '{key}'")


def unrecognised(row: dict[str, Any], where: str, expected: str) -> DataError:
    keys = ", ".join(sorted(row)) or "none"
    return DataError(f"{where}: unrecognised row (keys: {keys}); expected {expected}")


def detect_format(row: dict[str, Any]) -> str | None:
    if "messages" in row:
        return "messages"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "chosen" in row:
        return "hh"
    return None


def row_to_messages(row: dict[str, Any], fmt: str, where: str) -> list[Message]:
    """One JSONL row in `fmt` (or `auto`) → a chat; raises DataError naming what is wrong."""
    if fmt == "auto":
        fmt = detect_format(row) or ""
        if not fmt:
            raise unrecognised(row, where, "'messages', 'prompt'+'completion', or an HH 'chosen' dialogue")
    if fmt == "messages":
        require(row, ("messages",), where)
        return check_messages(row["messages"], where, "messages")
    if fmt == "prompt_completion":
        require(row, ("prompt", "completion"), where)
        return _as_messages(row["prompt"], "user", where, "prompt") + _as_messages(
            row["completion"], "assistant", where, "completion"
        )
    if fmt == "hh":
        require(row, ("chosen",), where)
        return parse_hh_dialogue(row["chosen"], where)
    raise DataError(f"{where}: unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


def read_chats(path: str | Path, fmt: str = "auto") -> list[tuple[int, list[Message]]]:
    """All chats of a file as `(line_number, messages)`; the first bad row raises DataError."""
    return [(line_no, row_to_messages(row, fmt, f"{path}:{line_no}")) for line_no, row in read_jsonl(path)]


def batch_for_step(items: list, step: int, size: int, seed: int) -> list:
    """The items of step `step`: consecutive slices of a per-epoch seeded shuffle, so that the
    data position of a run is its step number (what makes resume exact)."""
    n = len(items)
    out = []
    for k in range(step * size, (step + 1) * size):
        epoch, pos = divmod(k, n)
        out.append(items[_epoch_order(n, seed, epoch)[pos]])
    return out


@functools.lru_cache(maxsize=8)
def _epoch_order(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    """The shuffle of epoch `epoch`, computed once (a run asks for it once per step)."""
    order = list(range(n))
    random.Random(seed + epoch).shuffle(order)
    return tuple(order)
