"""The annotation database (SQLite and PostgreSQL): users, import, assignment with overlap, labels with
revisions, idempotent submits under concurrency, expiry, audit, and the preference export."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from annotation_ui.export import build_rows, export
from annotation_ui.store import Store, StoreError
from annotation_ui.tasks import read_tasks
from common.data import DataError
from common.data.preferences import read_preferences


def task(i: int, k: int = 3) -> dict:
    return {"prompt": [{"role": "user", "content": f"question {i}"}], "responses": [f"answer {i}.{j}" for j in range(k)],
            "model_ids": [f"m{j}" for j in range(k)], "domain": "general", "source": f"t:{i}"}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path) -> Store:
    """Every storage test runs on both real stores: a SQLite file and a PostgreSQL server."""
    if request.param == "sqlite":
        return Store(str(tmp_path / "labels.db"))
    return Store(request.getfixturevalue("postgres").new_database())


def test_users_are_hashed_and_checked(store):
    uid = store.add_user("ann", "correct horse", "annotator")
    with pytest.raises(StoreError, match="already exists"):
        store.add_user("ann", "another pass")
    with pytest.raises(StoreError, match="at least 8"):
        store.add_user("bob", "short")
    user = store.users()[0]
    assert user.id == uid and "correct horse" not in user.password_hash and user.password_hash.startswith("$2")
    assert store.authenticate("ann", "correct horse").id == uid
    assert store.authenticate("ann", "wrong") is None
    store.set_active("ann", False)
    assert store.authenticate("ann", "correct horse") is None
    events = [a.event for a in store.audit_log()]
    assert events.count("login") == 1 and events.count("login_failed") == 2


def test_overlap_no_repeats_shuffled_order_and_expiry(store):
    users = [store.add_user(f"u{i}", "password123") for i in range(3)]
    store.add_tasks([task(1), task(2)])
    h0 = store.next_task(users[0], overlap=2)
    assert store.next_task(users[0], overlap=2).task_id == h0.task_id  # the open one again, not a new one
    assert sorted(h0.responses) == sorted(task(1)["responses"]) and "model_ids" not in vars(h0)
    store.submit(users[0], h0.task_id, [1, 2, 3], "r0")
    assert store.next_task(users[0], overlap=2).task_id == 2  # never the same task twice
    h1 = store.next_task(users[1], overlap=2)
    assert h1.task_id == 1
    store.submit(users[1], 1, [1, 1, 2], "r1")
    h2 = store.next_task(users[2], overlap=2)  # task 1 has its 2 annotators; task 2 has 1 open
    assert h2.task_id == 2
    # an abandoned assignment expires back to the pool
    store.skip(users[2], 2)
    lone = store.add_user("late", "password123")
    h3 = store.next_task(lone, overlap=2, ttl_minutes=-1)  # expired as soon as it is made
    assert h3.task_id == 2
    assert store.next_task(users[2], overlap=2) is None  # skipped task 2 stays skipped for u2; task 1 is full
    assert store.progress(users[0], overlap=2) == {"done": 1, "left": 1}  # task 2, still open for u0


def test_submit_is_idempotent_and_revisions_are_kept(store):
    a, b = store.add_user("a", "password123"), store.add_user("b", "password123")
    store.add_tasks([task(1)])
    store.next_task(a, overlap=2)
    first = store.submit(a, 1, [1, 2, 3], "req-1")
    again = store.submit(a, 1, [1, 2, 3], "req-1")
    assert again.id == first.id and len(store.labels(latest_only=False)) == 1
    store.submit(a, 1, [3, 2, 1], "req-2")  # a revision
    versions = [(lab.version, lab.ranks) for lab in store.labels(a, latest_only=False)]
    assert versions == [(1, [1, 2, 3]), (2, [3, 2, 1])]
    assert [lab.ranks for lab in store.labels(a)] == [[3, 2, 1]]
    assert store.labels(b) == []  # b sees none of a's labels
    with pytest.raises(StoreError, match="not assigned"):
        store.submit(b, 1, [1, 2, 3], "req-3")
    with pytest.raises(StoreError, match="without gaps"):
        store.submit(a, 1, [1, 3, 3], "req-4")
    events = [e.event for e in store.audit_log()]
    assert "submit" in events and "revise" in events


def test_many_annotators_at_once_never_exceed_the_overlap_and_lose_nothing(store):
    n_users, overlap = 12, 3
    users = [store.add_user(f"u{i}", "password123") for i in range(n_users)]
    store.add_tasks([task(i) for i in range(8)])
    acked, errors = [], []

    def work(uid):
        try:
            while (h := store.next_task(uid, overlap=overlap)) is not None:
                rid = uuid.uuid4().hex
                ranks = [h.order.index(i) + 1 for i in range(len(h.order))]  # the displayed order is the ranking
                label = store.submit(uid, h.task_id, ranks, rid)
                store.submit(uid, h.task_id, ranks, rid)  # a retried request
                acked.append((uid, h.task_id, label.id))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    labels = store.labels(latest_only=False)
    assert sorted(lab.id for lab in labels) == sorted(i for _, _, i in acked)  # every acknowledged label, once
    per_task = {}
    for lab in labels:
        per_task.setdefault(lab.task_id, set()).add(lab.user_id)
    assert all(len(v) == overlap for v in per_task.values()) and len(per_task) == 8


def test_bad_task_files_name_the_line_and_import_nothing(tmp_path):
    cases = {
        '{"prompt": "q", "responses": ["only one"]}': r":1: 'responses' must be a list of at least 2",
        '{"prompt": "q", "responses": ["a", "  "]}': r":1: response 2 must be a non-empty string",
        '{"prompt": "q", "responses": ["a", "' + "x" * 20001 + '"]}': r":1: response 2 is 20001 characters",
        '{"prompt": "q", "responses": ["a", "b"], "gold_ranks": [1, 3]}': r":1: gold_ranks: ranks must start at 1",
        '{"question": "q"}': r":1: unrecognised row",
        '{"prompt": "q", "responses": ' + str([f"r{j}" for j in range(9)]).replace("'", '"') + '}': r":1: 9 responses; at most 8",
        '{"prompt": "", "responses": ["a", "b"]}': r":1: 'prompt' must be a non-empty string",
    }
    good = '{"prompt": "fine", "responses": ["a", "b"]}\n'
    for i, (line, message) in enumerate(cases.items()):
        path = tmp_path / f"tasks{i}.jsonl"
        path.write_text(good + line + "\n")
        with pytest.raises(DataError, match=message.replace(":1:", ":2:")):
            read_tasks(str(path))
    broken = tmp_path / "broken.jsonl"
    broken.write_text(good + "{not json\n")
    with pytest.raises(DataError, match=r"broken\.jsonl:2"):
        read_tasks(str(broken))


def test_hh_rows_become_two_response_tasks_behind_a_notice(tmp_path):
    path = tmp_path / "hh.jsonl"
    row = {"chosen": "\n\nHuman: hi\n\nAssistant: hello!", "rejected": "\n\nHuman: hi\n\nAssistant: go away"}
    path.write_text(json.dumps(row) + "\n")
    (t,), skipped = read_tasks(str(path))
    assert t["responses"] == ["hello!", "go away"] and t["content_notice"] and skipped == 0


def test_export_expands_rankings_into_pairs_the_reward_model_reads(store, tmp_path):
    a, b, c = (store.add_user(n, "password123") for n in "abc")
    store.add_tasks([task(1)])
    for uid, ranks in ((a, [1, 2, 2]), (b, [1, 2, 3]), (c, [2, 1, 3])):
        store.next_task(uid, overlap=3)
        store.submit(uid, 1, ranks, f"r{uid}")
    pairs, rankings = build_rows(store, "all")
    # a: 0>1, 0>2 (1~2 tied, dropped); b: 0>1, 0>2, 1>2; c: 1>0, 1>2, 0>2
    assert len(pairs) == 8 and len(rankings) == 3
    assert {r["annotator"] for r in rankings} == {"a", "b", "c"}
    majority, _ = build_rows(store, "majority")
    summary = {(p["chosen"][0]["content"][-1], p["rejected"][0]["content"][-1]): p["agreement"] for p in majority}
    assert summary == {("0", "1"): 2 / 3, ("0", "2"): 1.0, ("1", "2"): 2 / 3}
    counts = export(store, tmp_path / "out", "all")
    assert counts == {"pairs": 8, "rankings": 3, "left_out": {}, "left_out_labels": 0}
    groups = read_preferences(str(tmp_path / "out/pairs.jsonl"))
    assert len(groups) == 8 and groups[0].prompt == [{"role": "user", "content": "question 1"}]
    assert len(read_preferences(str(tmp_path / "out/rankings.jsonl"))) == 3
    assert (tmp_path / "out/pairs/dataset_info.json").is_file()
    assert store.audit_log()[-1].event == "export"


def test_command_line_users_import_export(tmp_path):
    import os
    import subprocess
    import sys

    from helpers.stages import REPO

    db, env = tmp_path / "cli.db", {**os.environ, "ANNOTATION_PASSWORD": "s3cret-pass", "PYTHONPATH": str(REPO)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "annotation_ui", "--db", str(db), *args], cwd=REPO, env=env,
                              capture_output=True, text=True)

    assert cli("users", "add", "lead", "--role", "admin").returncode == 0
    assert "lead" in cli("users", "list").stdout and "admin" in cli("users", "list").stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "q", "responses": ["a", "b"]}\n{"prompt": "q", "responses": ["a"]}\n')
    proc = cli("import", str(bad))
    assert proc.returncode == 2 and "bad.jsonl:2" in proc.stderr and "Traceback" not in proc.stderr
    assert Store(str(db)).tasks() == []  # nothing half-imported
    good = tmp_path / "good.jsonl"
    good.write_text('{"prompt": "q", "responses": ["a", "b"], "domain": "code"}\n')
    assert "imported 1 tasks" in cli("import", str(good)).stdout
    assert "exported 0 pairs" in cli("export", str(tmp_path / "out")).stdout
    assert cli("users", "add", "lead").returncode == 2  # a duplicate: one line, no traceback


def test_gold_tasks_are_mixed_in_at_the_rate_and_go_to_everyone(store):
    import random

    users = [store.add_user(f"g{i}", "password123") for i in range(3)]
    gold = {"prompt": [{"role": "user", "content": "gold"}], "responses": ["good", "bad"], "gold_ranks": [1, 2]}
    store.add_tasks([task(1), gold, task(3)])
    for uid in users:  # rate 1: each annotator's first task is the gold one, whatever the overlap
        assert store.next_task(uid, overlap=1, gold_rate=1.0).task_id == 2
    never = store.add_user("never", "password123")
    seen = set()
    while (h := store.next_task(never, overlap=4, gold_rate=0.0, rng=random.Random(0))) is not None:
        seen.add(h.task_id)
        store.submit(never, h.task_id, [1] * len(h.responses), f"n{h.task_id}")
    assert seen == {1, 3}  # rate 0: no gold task


def test_generated_candidates_become_tasks(tiny_model_dir, tmp_path):
    from annotation_ui.tasks import generate_tasks

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Say hi.", "domain": "general"}\n{"prompt": "你好吗？"}\n')
    tasks = generate_tasks(str(tiny_model_dir), str(prompts), k=3, max_new_tokens=6)
    assert len(tasks) == 2 and all(len(t["responses"]) == 3 and all(t["responses"]) for t in tasks)
    assert tasks[0]["model_ids"] == [str(tiny_model_dir)] * 3 and tasks[1]["source"].endswith(":2")
    with pytest.raises(DataError, match="k must be from 2 to 8"):
        generate_tasks(str(tiny_model_dir), str(prompts), k=1)


def test_higher_priority_tasks_are_handed_out_first(store):
    users = [store.add_user(f"u{i}", "password123") for i in range(2)]
    ids = store.add_tasks([task(1), {**task(2), "priority": 0.9}, {**task(3), "priority": 0.5}, {**task(4), "priority": 0.9}])
    order = []
    while (h := store.next_task(users[0], overlap=1)) is not None:
        order.append(h.task_id)
        store.submit(users[0], h.task_id, [1, 2, 3], f"r{h.task_id}")
    assert order == [ids[1], ids[3], ids[2], ids[0]]  # by priority, ties oldest first; a plain import is 0
    assert store.next_task(users[1], overlap=1) is None  # the overlap rule unchanged


def test_the_overview_shows_each_round_with_its_budget_and_progress(store):
    user = store.add_user("u0", "password123")
    store.add_tasks([task(1), task(2)], batch="round-1")
    store.add_tasks([{**task(3), "priority": 0.8}, {**task(4), "priority": 0.3}, {**task(5), "priority": 0.1}],
                    batch="round-2")
    store.add_tasks([task(6)])  # no batch: not a round
    h = store.next_task(user, overlap=1)
    store.submit(user, h.task_id, [1, 2, 3], "r1")
    rounds = [(b["batch"], b["tasks"], b["labelled"], b["priority_max"], b["priority_min"]) for b in store.overview()["batches"]]
    assert rounds == [("round-1", 2, 0, 0.0, 0.0), ("round-2", 3, 1, 0.8, 0.1)]  # the most uncertain went first


def test_annotators_under_the_agreement_floor_are_flagged_and_can_be_left_out(tmp_path):
    """Simulated annotators of known noise: two careful ones, one who swaps the top two 1 time in
    10, one who ranks at random. Only the random one falls under a 0.75 floor."""
    import random

    from annotation_ui.quality import below_floor, store_report

    store = Store(str(tmp_path / "labels.db"))
    rng = random.Random(0)
    truth = [1, 2, 3]
    noise = {"careful1": 0.0, "careful2": 0.0, "mostly": 0.1, "sloppy": 1.0}
    users = {name: store.add_user(name, "password123") for name in noise}
    store.add_tasks([task(i) for i in range(30)])
    store.add_tasks([{**task(100 + i), "gold_ranks": truth} for i in range(10)])
    for name, p in noise.items():  # through the hand-outs, as the app does: gold first (rate 1), then the rest
        while (h := store.next_task(users[name], overlap=4, gold_rate=1.0)) is not None:
            if rng.random() < p:
                ranks = rng.sample(truth, 3) if p == 1.0 else [2, 1, 3]
            else:
                ranks = truth
            store.submit(users[name], h.task_id, ranks, f"{name}-{h.task_id}")
    low = below_floor(store_report(store), 0.75)
    assert list(low["annotators"]) == ["sloppy"]
    assert any("gold accuracy" in r for r in low["annotators"]["sloppy"])
    counts = export(store, tmp_path / "out", "all", floor=0.75)
    assert list(counts["left_out"]) == ["sloppy"] and counts["left_out_labels"] == 30
    assert counts["rankings"] == 3 * 30
    rows = [json.loads(line) for line in (tmp_path / "out" / "rankings.jsonl").read_text().splitlines()]
    assert {r["annotator"] for r in rows} == {"careful1", "careful2", "mostly"}
    assert export(store, tmp_path / "all", "all")["rankings"] == 4 * 30  # no floor: everyone

    import subprocess
    import sys

    from helpers.stages import REPO

    cli = [sys.executable, "-m", "annotation_ui", "--db", str(tmp_path / "labels.db"), "export"]
    proc = subprocess.run([*cli, str(tmp_path / "cli"), "--floor", "0.75"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and "left out sloppy (under the floor 0.75: gold accuracy" in proc.stdout
    assert "left out 30 rankings by 1 annotator(s)" in proc.stdout
    proc = subprocess.run([*cli, str(tmp_path / "bad"), "--floor", "2"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: --floor must lie in (0, 1], got 2"
    assert not (tmp_path / "bad").exists()


def test_priority_in_task_files_is_checked(tmp_path):
    path = tmp_path / "tasks.jsonl"
    path.write_text('{"prompt": "q", "responses": ["a", "b"], "priority": 0.7}\n{"prompt": "q2", "responses": ["a", "b"]}\n')
    tasks, _ = read_tasks(str(path))
    assert [t["priority"] for t in tasks] == [0.7, 0.0]
    path.write_text('{"prompt": "q", "responses": ["a", "b"], "priority": "high"}\n')
    with pytest.raises(DataError, match=r":1: 'priority' must be a finite number"):
        read_tasks(str(path))


def test_generation_keeps_the_budget_the_reward_model_is_least_sure_of(tiny_model_dir, tiny_reward_model, tmp_path):
    from annotation_ui.tasks import generate_tasks

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(f'{{"prompt": "Question {i}?", "domain": "{d}"}}\n'
                               for i, d in enumerate(["medical", "medical", "legal", "code"])))
    kept = generate_tasks(str(tiny_model_dir), str(prompts), k=3, max_new_tokens=6, budget=3,
                          reward_models=[str(tiny_reward_model)], strategy="margin")
    assert len(kept) == 3 and len({t["source"] for t in kept}) == 3
    assert sorted(t["domain"] for t in kept) == ["code", "legal", "medical"]  # one domain does not take it all
    assert [t["priority"] for t in kept] == sorted((t["priority"] for t in kept), reverse=True)
    assert all(0 <= t["priority"] <= 1 for t in kept)
    both = generate_tasks(str(tiny_model_dir), str(prompts), k=3, max_new_tokens=6, budget=2,
                          reward_models=[str(tiny_reward_model)] * 2, strategy="ensemble")
    assert len(both) == 2 and all(t["priority"] == pytest.approx(0, abs=1e-9) for t in both)  # identical members agree
    bad = {
        "larger than the candidate pool: .*4 prompts": dict(budget=5, reward_models=[str(tiny_reward_model)], strategy="margin"),
        "needs --reward_model": dict(budget=2, strategy="margin"),
        "ensemble needs ≥ 2 reward models": dict(budget=2, reward_models=[str(tiny_reward_model)], strategy="ensemble"),
        "not a reward model": dict(budget=2, reward_models=[str(tiny_model_dir)], strategy="margin"),
        "name how with --select": dict(budget=2),
    }
    for message, kwargs in bad.items():
        with pytest.raises(DataError, match=message):
            generate_tasks(str(tiny_model_dir), str(prompts), k=3, max_new_tokens=6, **kwargs)


def test_a_database_that_cannot_be_opened_is_a_clear_error(tmp_path):
    garbage = tmp_path / "not-a-db.db"
    garbage.write_text("this is not SQLite\n" * 100)
    with pytest.raises(StoreError, match="not-a-db.db: cannot open the database: file is not a database"):
        Store(str(garbage))
    with pytest.raises(StoreError, match="not a database URL"):
        Store("mysql+nodriver://host/db")
    with pytest.raises(StoreError, match=r"nobody:\*\*\*@127\.0\.0\.1:1/x: cannot open the database"):
        Store("postgresql+psycopg://nobody:secret@127.0.0.1:1/x")  # the password never shows
