import gzip
import json

import pytest

from common.data import DataError, parse_hh_dialogue, read_chats, read_jsonl, row_to_messages


def write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_hh_dialogue_becomes_alternating_messages():
    text = "\n\nHuman: Hi there\n\nAssistant: Hello!\nHow can I help?\n\nHuman: A joke?\n\nAssistant: No."
    assert parse_hh_dialogue(text, "x") == [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello!\nHow can I help?"},
        {"role": "user", "content": "A joke?"},
        {"role": "assistant", "content": "No."},
    ]


def test_hh_rejects_text_that_is_not_a_dialogue():
    with pytest.raises(DataError, match="f:3: not an HH dialogue"):
        parse_hh_dialogue("just text", "f:3")


def test_the_three_row_shapes_become_chats():
    msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert row_to_messages({"messages": msgs}, "auto", "w") == msgs
    assert row_to_messages({"prompt": "q", "completion": "a"}, "auto", "w") == msgs
    assert row_to_messages({"prompt": [msgs[0]], "completion": [msgs[1]]}, "prompt_completion", "w") == msgs
    assert row_to_messages({"chosen": "\n\nHuman: q\n\nAssistant: a", "rejected": "x"}, "auto", "w") == msgs


@pytest.mark.parametrize(
    "line, problem",
    [
        ('{"messages": [{"role": "user", "content": "q"}', "invalid JSON"),
        ('[1, 2]', "expected a JSON object"),
        ('{"text": "hello"}', "unrecognised row"),
        ('{"messages": []}', "'messages' must be a non-empty list"),
        ('{"messages": [{"role": "robot", "content": "q"}]}', "unknown role 'robot'"),
        ('{"messages": [{"role": "user", "content": 5}]}', r"messages\[0\]\.content must be a string"),
        ('{"messages": [{"role": "user"}]}', "must be an object with 'role' and 'content'"),
        ('{"prompt": "q"}', "unrecognised row"),
    ],
)
def test_a_bad_row_names_file_line_and_problem(tmp_path, line, problem):
    good = json.dumps({"prompt": "q", "completion": "a"})
    path = write_lines(tmp_path / "d.jsonl", [good, "", good, line])
    with pytest.raises(DataError, match=rf"d\.jsonl:4: .*{problem}"):
        read_chats(path)


def test_explicit_format_reports_the_missing_field(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", ['{"prompt": "q"}'])
    with pytest.raises(DataError, match=r"d\.jsonl:1: missing field 'completion'"):
        read_chats(path, "prompt_completion")


def test_gzip_and_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    with gzip.open(path, "wt") as f:
        f.write('{"a": 1}\n\n{"a": 2}\n')
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (3, {"a": 2})]


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl: file not found"):
        list(read_jsonl(tmp_path / "nope.jsonl"))


def test_shared_hh_file_reads(repo):
    rows = read_chats(repo.parent / "shared/data/hh-rlhf/harmless-base-1500.jsonl.gz", "hh")
    assert len(rows) == 1500
    assert all(m[-1]["role"] == "assistant" for _, m in rows)


def test_parse_prompt_text_or_chat_ending_with_a_user_turn():
    from common.data import parse_prompt

    assert parse_prompt("hi", "f:1") == [{"role": "user", "content": "hi"}]
    chat = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert parse_prompt(chat, "f:2") == chat
    with pytest.raises(DataError, match=r"f:3: 'prompt' is empty"):
        parse_prompt("  ", "f:3")
    with pytest.raises(DataError, match=r"f:4: a chat 'prompt' must end with a user message"):
        parse_prompt([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}], "f:4")
