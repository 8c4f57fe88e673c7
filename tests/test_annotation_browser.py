"""The labelling page in a real browser: Debian's Chromium driven by Playwright (never
`playwright install`). Two annotators work at the same time in separate browser contexts —
ranking by mouse and by keyboard, skipping, flagging, revising — then an admin exports, and the
exported pairs are exactly what was clicked. And untrusted HTML/script in tasks never runs."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from annotation_ui.store import Store

from helpers.annotation import PASSWORD, seed, start, stop, task
from helpers.stages import free_port

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
# Every wait ends on a signal the app itself gives (a status text, the upload's "file ready"),
# not on a time budget; this bound only turns a stalled page into a failure. A busy machine
# (CI runners are shared) slows the signal down, it does not make it wrong.
SIGNAL = 300_000
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is needed: apt-get install -y chromium (.ci/run does)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Annotator:
    """One logged-in browser context, with every dialog and console error recorded."""

    def __init__(self, browser, url: str, name: str, locale: str = "en-US"):
        self.context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 1600})
        self.context.set_default_timeout(SIGNAL)  # clicks and fills wait for the element as long as signals do
        self.page = self.context.new_page()
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url)
        self.page.get_by_label("username").fill(name)
        self.page.get_by_label("password").fill(PASSWORD)
        self.page.get_by_role("button", name="Login").click()
        self.page.wait_for_selector("#rk-progress :text('Done')", timeout=SIGNAL)

    def responses(self) -> list[str]:
        """The response texts in the order this annotator sees them."""
        out = []
        for i in range(8):
            slot = self.page.locator(f"#rk-slot-{i}").first
            if not slot.is_visible():
                break
            out.append(self.page.locator(f"#rk-response-{i}").inner_text().strip())
        return out

    def prompt(self) -> str:
        return self.page.locator("#rk-prompt").inner_text()

    def click_rank(self, slot: int, rank: int) -> None:
        self.page.locator(f"#rk-rank-{slot} label", has_text=re.compile(rf"^\s*{rank}\s*$")).click()

    def keys(self, *keys: str) -> None:
        self.page.locator("#rk-shortcuts").click()  # focus on the page, not in a text box
        for k in keys:
            self.page.keyboard.press(k)

    def wait_status(self, pattern: str) -> str:
        status = self.page.locator("#rk-status")
        try:
            status.filter(has_text=re.compile(pattern)).wait_for(timeout=SIGNAL)
        except Exception:
            self.page.screenshot(path=f"/tmp/rk-failed-{pattern}.png", full_page=True)
            raise AssertionError(f"status {status.inner_text()!r} never matched {pattern!r}; errors {self.errors}") from None
        return status.inner_text()

    def checked_ranks(self, k: int) -> list[str | None]:
        out = []
        for i in range(k):
            box = self.page.locator(f"#rk-rank-{i} input[type=radio]:checked")
            out.append(box.get_attribute("value") if box.count() else None)
        return out


def task_of(prompt_text: str) -> int:
    return int(re.search(r"question (\d+)", prompt_text).group(1))


def test_two_annotators_rank_skip_flag_revise_and_the_export_matches(browser, tmp_path, tiny_model_dir):
    db = str(tmp_path / "labels.db")
    seed(db, ["alice", "bob"], ["root"], [task(i) for i in range(1, 5)])
    port = free_port()
    proc = start(db, port, tmp_path, "--overlap", "2")
    url = f"http://127.0.0.1:{port}/"
    expected: Counter = Counter()  # (prompt, chosen, rejected) → votes, from the final labels
    try:
        alice, bob = Annotator(browser, url, "alice"), Annotator(browser, url, "bob")
        assert not alice.page.locator("#rk-tab-admin-button").is_visible()  # no admin tab for annotators
        assert alice.page.locator("button[role=tab]", has_text="Admin").count() == 0

        # alice, by mouse: A best, B and C tied
        p1, r = alice.prompt(), alice.responses()
        assert task_of(p1) == 1 and len(r) == 3
        alice.click_rank(0, 1)
        alice.page.locator("#rk-submit").click()  # not every response ranked yet: refused, nothing saved
        alice.wait_status("give every response a rank first")
        alice.click_rank(1, 2), alice.click_rank(2, 2)
        alice.page.locator("#rk-submit").click()
        alice.wait_status("Saved")
        expected.update([("question 1", r[0], r[1]), ("question 1", r[0], r[2])])

        # bob, at the same time, by keyboard: A=3, B=2, C=1 then Ctrl+Enter
        assert task_of(bob.prompt()) == 1
        rb = bob.responses()
        bob.keys("a", "3", "2", "1", "Control+Enter")
        bob.wait_status("Saved")

        # alice skips task 2 with Shift+S, flags task 3 by mouse
        assert task_of(alice.prompt()) == 2
        alice.keys("Shift+S")
        alice.wait_status("Skipped")
        assert task_of(alice.prompt()) == 3
        alice.page.locator("#rk-flag-box").get_by_text("Flag").first.click()
        alice.page.locator("#rk-flag-reason label", has_text="Broken").click()
        alice.page.locator("#rk-note textarea").fill("the answers are cut off")
        alice.page.locator("#rk-flag").click()
        alice.wait_status("Flagged")

        # bob ranks task 2 by mouse, submits with the keyboard
        assert task_of(bob.prompt()) == 2
        r2 = bob.responses()
        bob.click_rank(0, 2), bob.click_rank(1, 1), bob.click_rank(2, 3)
        bob.keys("Control+Enter")
        bob.wait_status("Saved")
        expected.update([("question 2", r2[1], r2[0]), ("question 2", r2[1], r2[2]), ("question 2", r2[0], r2[2])])

        # bob revises his task-1 label from "My labels": his old ranks come back, he changes them
        bob.page.get_by_role("tab", name="My labels").click()
        bob.page.locator("#rk-mine-table").filter(has_text="A:3").wait_for(timeout=SIGNAL)
        bob.page.locator("#rk-revise-pick input").click()
        bob.page.get_by_role("option", name="1", exact=True).click()
        bob.page.locator("#rk-revise").click()
        bob.page.locator("#rk-meta").filter(has_text="Revising").wait_for(timeout=SIGNAL)
        assert task_of(bob.prompt()) == 1 and bob.responses() == rb
        assert bob.checked_ranks(3) == ["3", "2", "1"]
        bob.keys("a", "1", "1", "2", "Control+Enter")
        bob.wait_status("version 2")
        expected.update([("question 1", rb[0], rb[2]), ("question 1", rb[1], rb[2])])

        # the language switch relabels the page
        alice.page.locator("#rk-lang label", has_text="中文").click()
        alice.page.locator("#rk-submit").filter(has_text="提交排序").wait_for(timeout=SIGNAL)
        for tab in ("标注", "我的标注"):  # every tab relabels (the updates land one by one: wait on each)
            alice.page.get_by_role("tab", name=tab, exact=True).wait_for(timeout=SIGNAL)
        alice.page.locator("#rk-lang label", has_text="English").click()
        alice.page.locator("#rk-submit").filter(has_text="Submit ranking").wait_for(timeout=SIGNAL)
        for tab in ("Label", "My labels"):
            alice.page.get_by_role("tab", name=tab, exact=True).wait_for(timeout=SIGNAL)

        for who in (alice, bob):
            assert not who.dialogs and not who.errors, (who.dialogs, who.errors)

        # the admin exports every vote from the admin page
        admin = Annotator(browser, url, "root")
        admin.page.get_by_role("tab", name="Admin").click()
        admin.page.locator("#rk-totals").filter(has_text="Tasks").wait_for(timeout=SIGNAL)
        assert "alice" in admin.page.locator("#rk-overview").inner_text()
        assert "No named rounds yet" in admin.page.locator("#rk-current-round").inner_text()  # imported without a batch
        admin.page.locator("#rk-combine label", has_text="every vote").click()
        admin.page.locator("#rk-export").click()
        result = admin.page.locator("#rk-export-result")
        result.filter(has_text="Exported").wait_for(timeout=SIGNAL)
        folder = Path(re.search(r"to (\S+)\.$", result.inner_text().strip()).group(1).strip("`"))
        rows = [json.loads(line) for line in (folder / "pairs.jsonl").read_text().splitlines()]
        got = Counter((r["prompt"][-1]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows)
        # every vote of the latest labels, nothing else: bob's first vote on task 1 (three pairs) is gone,
        # his revision (two pairs) and alice's vote (two pairs) are there
        assert got == expected
        assert sum(n for (prompt, _, _), n in got.items() if prompt == "question 1") == 4
        # the admin loads tasks from the Admin tab: a bad file is refused naming its line, a good one lands
        bad, good = tmp_path / "bad.jsonl", tmp_path / "more.jsonl"
        bad.write_text('{"prompt": "q", "responses": ["a", "b"]}\n{"prompt": "q", "responses": ["only one"]}\n')
        good.write_text('{"prompt": "new question", "responses": ["x", "y"], "domain": "legal"}\n')
        for path, message in [(bad, "bad.jsonl:2"), (good, "Imported 1 tasks")]:
            upload = admin.page.locator("#rk-import-file")
            if upload.locator("button[aria-label='Clear']").count():
                upload.locator("button[aria-label='Clear']").click()
            with admin.page.expect_file_chooser() as chooser:
                upload.locator("button.upload-container").click()
            chooser.value.set_files(str(path))
            admin.page.locator("#rk-import-result").filter(has_text=f"File ready: {path.name}").wait_for(timeout=SIGNAL)
            admin.page.locator("#rk-import").click()
            admin.page.locator("#rk-import-result").filter(has_text=message).wait_for(timeout=SIGNAL)
        # … or generates K candidates per prompt with a model, a progress bar in the page
        prompts = tmp_path / "prompts.jsonl"
        prompts.write_text('{"prompt": "Is a verbal contract binding?", "domain": "finance"}\n'
                           '{"prompt": "What is compound interest?", "domain": "finance"}\n')
        upload = admin.page.locator("#rk-gen-prompts")
        with admin.page.expect_file_chooser() as chooser:
            upload.locator("button.upload-container").click()
        chooser.value.set_files(str(prompts))
        admin.page.locator("#rk-generate-result").filter(has_text=f"File ready: {prompts.name}").wait_for(timeout=SIGNAL)
        admin.page.locator("#rk-gen-model textarea, #rk-gen-model input").first.fill(str(tiny_model_dir))
        for slider, value in (("#rk-gen-k", "2"), ("#rk-gen-tokens", "16")):
            box = admin.page.locator(f"{slider} input[type=number]")
            box.fill(value)
            box.press("Tab")
        admin.page.locator("#rk-generate").click()
        admin.page.locator("#rk-generate-result").filter(has_text="Generated 2 tasks").wait_for(timeout=SIGNAL)
        assert not admin.dialogs and not admin.errors
    finally:
        stop(proc)
    store = Store(db)
    versions = sorted((lab.task_id, lab.version) for lab in store.labels(latest_only=False) if lab.user_id == 2)
    assert versions == [(1, 1), (1, 2), (2, 1)]  # the revision was added, the old version kept
    events = {e.event for e in store.audit_log()}
    assert {"login", "submit", "revise", "skip", "flag", "export"} <= events
    flagged = [lab for lab in store.labels() if lab.flag]
    assert [(f.flag, f.note) for f in flagged] == [("broken", "the answers are cut off")]
    tasks = store.tasks()
    assert [t.domain for t in tasks] == ["general"] * 4 + ["legal"] + ["finance"] * 2  # the bad upload added nothing
    assert [len(t.responses) for t in tasks[-2:]] == [2, 2] and tasks[-1].model_ids == [str(tiny_model_dir)] * 2


PAYLOADS = [
    '<img src=x onerror="window.__xss=1;alert(1)">',
    "<script>window.__xss=2;alert(2)</script>",
    "[click me](javascript:window.__xss=3;alert(3))",
    '<a href="javascript:alert(4)">link</a><svg onload="window.__xss=5"></svg>',
    '<iframe src="javascript:alert(6)"></iframe><style>body{display:none}</style>',
]


def test_html_and_script_in_tasks_render_as_text_and_never_run(browser, tmp_path):
    db = str(tmp_path / "labels.db")
    tasks = [{"prompt": [{"role": "user", "content": f"question 1 {PAYLOADS[0]}"}],
              "responses": PAYLOADS[1:4], "domain": "code", "source": "xss:1"},
             {"prompt": [{"role": "user", "content": "question 2 <b onmouseover=alert(7)>hover</b>"}],
              "responses": [PAYLOADS[4], "plain"], "domain": '<img src=x onerror="alert(8)">', "source": "xss:2"}]
    seed(db, ["carol"], [], tasks)
    port = free_port()
    proc = start(db, port, tmp_path, "--overlap", "1")
    try:
        carol = Annotator(browser, f"http://127.0.0.1:{port}/", "carol")
        page = carol.page
        assert "<img src=x" in carol.prompt()  # shown as the text it is
        shown = carol.responses()
        # raw HTML shows as its literal text; a Markdown link stays a link, with its script target made dead
        assert PAYLOADS[1] in shown and PAYLOADS[3] in shown and "click me" in shown
        for link in page.locator("#rk-prompt a, [id^=rk-response-] a").all():
            href = link.get_attribute("href") or ""
            assert not href.lower().startswith(("javascript", "data", "vbscript")), href
            link.click(no_wait_after=True)
        assert page.locator("#rk-prompt b").count() == 0  # the <b onmouseover=…> is text, not an element
        page.wait_for_timeout(500)
        carol.keys("a", "1", "2", "3", "Control+Enter")
        carol.wait_status("Saved")
        assert "<iframe" in " ".join(carol.responses())
        assert page.locator("iframe, [id^=rk-response-] img, [id^=rk-response-] svg").count() == 0
        page.locator("#rk-prompt").hover()
        page.wait_for_timeout(500)
        assert page.evaluate("window.__xss") is None
        assert page.locator("body").is_visible()  # the <style> payload did not hide the page
        assert not carol.dialogs, carol.dialogs
        assert not carol.errors, carol.errors
    finally:
        stop(proc)
