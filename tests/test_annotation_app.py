"""The annotation server over HTTP, as a real process: login on every route, roles, identity from
the session, many annotators at once, and durability across a SIGKILL."""

from __future__ import annotations

import os
import random
import re
import signal
import threading
import time

import httpx
import pytest

from annotation_ui.store import Store

from helpers.annotation import PASSWORD, PATIENCE_S, ApiError, call, login, seed, start, stop, task
from helpers.stages import free_port

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("annotation")
    db = str(folder / "labels.db")
    seed(db, ["alice", "bob", "carol"], ["root"], [task(i) for i in range(1, 7)])
    port = free_port()
    proc = start(db, port, folder, "--overlap", "2")
    yield f"http://127.0.0.1:{port}", db
    stop(proc)


def all_routes():
    """(methods, path) of every route the app serves, Gradio's included routers too."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import tempfile

    from gradio.routes import App

    from annotation_ui.app import build_app
    from annotation_ui.config import AnnotationConfig
    from annotation_ui.service import Service

    cfg = AnnotationConfig(db=os.path.join(tempfile.mkdtemp(), "routes.db"))
    app = App.create_app(build_app(Service(Store(cfg.db), cfg), cfg))
    out = []

    def walk(routes):
        for r in routes:
            if getattr(r, "path", None) is not None:
                out.append((sorted(getattr(r, "methods", None) or {"GET"}), r.path))
            elif getattr(r, "original_router", None) is not None:
                walk(r.original_router.routes)
            elif getattr(r, "routes", None):
                walk(r.routes)

    walk(app.routes)
    return out


# The login page needs these; none carries data (checked below).
PUBLIC = re.compile(r"^/(|login/?|logout|favicon\.ico|theme\.css|robots\.txt|manifest\.json|gradio_api/theme\.css|"
                    r"gradio_api/startup-events|(assets|static|svelte)/.*)$")


def test_every_route_and_endpoint_refuses_an_anonymous_client(server):
    url, _ = server
    routes = all_routes()
    paths = {p for _, p in routes}
    assert "/gradio_api/queue/join" in paths and "/gradio_api/run/{api_name}" in paths and len(routes) > 60
    anon = httpx.Client(base_url=url, timeout=PATIENCE_S)
    fill = {"api_name": "submit", "path": "x", "path_or_url": "x", "session_hash": "abc", "event_id": "e1",
            "url_path": "x", "size": "192", "key": "x"}
    checked = 0
    for methods, path in routes:
        concrete = re.sub(r"\{(\w+)(:path)?\}", lambda m: fill.get(m.group(1), "x"), path)
        for method in methods:
            if method == "HEAD":
                continue
            r = anon.request(method, concrete, json={"data": []} if method == "POST" else None)
            checked += 1
            if PUBLIC.match(concrete):
                assert "question 1" not in r.text and "answer 1." not in r.text, concrete
                assert "all_labels" not in r.text, f"{concrete} leaks the API schema"
            else:
                assert r.status_code == 401, f"{method} {concrete} answered {r.status_code} to an anonymous client"
    assert checked > 60
    # a wrong password gets no session; gradio_client without credentials is refused too
    bad = httpx.Client(base_url=url)
    assert bad.post("/login", data={"username": "alice", "password": "wrong-password"}).status_code == 400
    assert bad.post("/gradio_api/run/next_task", json={"data": []}).status_code == 401
    from gradio_client import Client

    with pytest.raises(Exception, match="(?i)login|credentials|auth"):
        Client(url, verbose=False)


def test_annotators_see_only_their_own_labels_and_cannot_export(server):
    url, db = server
    alice, bob, root = login(url, "alice"), login(url, "bob"), login(url, "root")
    a = call(alice, "next_task")
    assert "model_ids" not in a and "order" not in a and a["k"] == 3
    call(alice, "submit", a["task_id"], [1, 2, 2], a["request_id"], None)
    b = call(bob, "next_task")
    call(bob, "submit", b["task_id"], [2, 1, 3], b["request_id"], [5, 4, 1])
    mine = call(alice, "my_labels")
    assert {r["task_id"] for r in mine} == {a["task_id"]} and mine[0]["ranks"] == [1, 2, 2]
    for endpoint, args in [("all_labels", ()), ("overview", ()), ("quality", ()), ("export", ("all",))]:
        with pytest.raises(ApiError, match="admins only"):
            call(alice, endpoint, *args)
    everyone = call(root, "all_labels")
    assert {r["annotator"] for r in everyone} >= {"alice", "bob"}
    exported = call(root, "export", "all")
    assert exported["pairs"] >= 2 and os.path.isfile(os.path.join(exported["path"], "pairs.jsonl"))
    events = [e.event for e in Store(db).audit_log()]
    assert "export" in events and events.count("login") >= 3


def test_identity_comes_from_the_session(server):
    url, db = server
    alice, carol = login(url, "alice"), login(url, "carol")
    c = call(carol, "next_task")
    # alice cannot label carol's task, even knowing its id and request id
    with pytest.raises(ApiError, match="never assigned|not assigned"):
        call(alice, "submit", c["task_id"], [1, 2, 3], c["request_id"], None)
    # a request id can't be replayed by another user either
    call(carol, "submit", c["task_id"], [1, 2, 3], c["request_id"], None)
    a = call(alice, "next_task")
    with pytest.raises(ApiError, match="another user"):
        call(alice, "submit", a["task_id"], [1, 2, 3], c["request_id"], None)
    # disabling a user locks them out although their session cookie is still valid
    store = Store(db)
    store.set_active("carol", False)
    time.sleep(2.5)
    with pytest.raises(ApiError, match="unknown or disabled"):
        call(carol, "next_task")
    store.set_active("carol", True)


def test_bad_submissions_get_clear_errors(server):
    url, _ = server
    bob = login(url, "bob")
    t = call(bob, "next_task")
    for ranks, message in [([1, 2], "each of the 3"), ([1, 2, 9], "1–3"), ([1, "x", 2], "integers"),
                           ([1, None, 2], "each of the 3")]:
        with pytest.raises(ApiError, match=message):
            call(bob, "submit", t["task_id"], ranks, t["request_id"], None)
    with pytest.raises(ApiError, match="scores"):
        call(bob, "submit", t["task_id"], [1, 2, 3], t["request_id"], [5, None, 1])
    with pytest.raises(ApiError, match="flag must be"):
        call(bob, "flag", t["task_id"], "boring", "", t["request_id"])
    assert call(bob, "flag", t["task_id"], "broken", "truncated", t["request_id"])["flag"] == "broken"


def annotate(url: str, name: str, acks: list, errors: list, stop_at: float, resend_every: int = 3,
             use_gradio_client: bool = False) -> None:
    """One simulated annotator: take tasks and rank them until none is left (or time is up)."""
    rng = random.Random(name)
    try:
        if use_gradio_client:
            from gradio_client import Client

            # gradio_client logs in with httpx's 5-second default: too short when 20 log in at once
            client = Client(url, auth=(name, PASSWORD), verbose=False, httpx_kwargs={"timeout": PATIENCE_S})

            def do(endpoint, *data):
                return client.predict(*data, api_name=f"/{endpoint}")
        else:
            http = login(url, name)

            def do(endpoint, *data):
                return call(http, endpoint, *data)
        n = 0
        while time.time() < stop_at:
            t = do("next_task")
            if t is None:
                return
            ranks = [rng.randint(1, t["k"]) for _ in range(t["k"])]
            res = do("submit", t["task_id"], ranks, t["request_id"], None)
            acks.append((name, t["task_id"], t["request_id"], res["version"]))
            n += 1
            if n % resend_every == 0:  # the same submit again (a double click, a retry): stored once
                again = do("submit", t["task_id"], ranks, t["request_id"], None)
                assert again["version"] == res["version"]
    except Exception as err:  # the server went away (the SIGKILL test expects it), or a failure to report
        errors.append(err)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_many_annotators_at_once_every_acknowledged_label_stored_once(backend, tmp_path, request):
    db = str(tmp_path / "labels.db") if backend == "sqlite" else request.getfixturevalue("postgres").new_database()
    names = [f"ann{i}" for i in range(20)]
    seed(db, names, [], [task(i) for i in range(40)])
    port = free_port()
    proc = start(db, port, tmp_path, "--overlap", "3")
    try:
        acks, errors = [], []
        threads = [threading.Thread(target=annotate, args=(f"http://127.0.0.1:{port}", n, acks, errors,
                                                           time.time() + 120, 3, i < 2))
                   for i, n in enumerate(names)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        stop(proc)
    assert not errors, errors[:3]
    store = Store(db)
    labels = store.labels(latest_only=False)
    assert len(acks) == 40 * 3  # every task reached its 3 annotators, no more
    assert sorted(lab.request_id for lab in labels) == sorted(a[2] for a in acks)  # each ack exactly once
    per_task: dict[int, set] = {}
    for lab in labels:
        per_task.setdefault(lab.task_id, set()).add(lab.user_id)
        assert lab.version == 1
    assert all(len(users) == 3 for users in per_task.values())


def test_sigkill_while_annotators_submit_loses_no_acknowledged_label(tmp_path):
    db = str(tmp_path / "labels.db")
    names = [f"ann{i}" for i in range(8)]
    seed(db, names, [], [task(i) for i in range(200)])
    port = free_port()
    proc = start(db, port, tmp_path, "--overlap", "2")
    acks, errors = [], []
    threads = [threading.Thread(target=annotate, args=(f"http://127.0.0.1:{port}", n, acks, errors, time.time() + 60))
               for n in names]
    for th in threads:
        th.start()
    while len(acks) < 40:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for th in threads:
        th.join()
    assert errors, "the annotators should have seen the server die"
    acked = list(acks)
    proc = start(db, port, tmp_path, "--overlap", "2", log_name="server-restarted.log")
    try:
        stored = {lab.request_id for lab in Store(db).labels(latest_only=False)}
        assert {a[2] for a in acked} <= stored  # every acknowledged label survived
        # work goes on after the restart: an annotator continues where they were
        client = login(f"http://127.0.0.1:{port}", names[0])
        t = call(client, "next_task")
        assert call(client, "submit", t["task_id"], [1, 2, 3], t["request_id"], None)["version"] == 1
    finally:
        stop(proc)


def test_the_gradio_internals_the_login_middleware_relies_on(tmp_path):
    """Pins what `annotation_ui.login` assumes of Gradio: a Gradio upgrade that renames the session
    cookie, moves the token store or changes how the login page inlines the API schema fails here."""
    import gradio as gr

    from annotation_ui.app import serve
    from annotation_ui.config import AnnotationConfig
    from annotation_ui.login import _API_INFO, session_cookie_names

    cfg = AnnotationConfig(db=str(tmp_path / "pin.db"), port=free_port(), export_dir=str(tmp_path / "exports"))
    store = Store(cfg.db)
    store.add_user("ann", PASSWORD)
    app, url = serve(cfg, store, block=False)  # in this process: the app object can be looked at
    try:
        client = httpx.Client(base_url=url, timeout=PATIENCE_S)
        page = client.get("/").text  # the login page, through the middleware: the schema is gone
        assert 'window.gradio_api_info = {"named_endpoints": {}, "unnamed_endpoints": {}};</script>' in page
        assert client.get("/gradio_api/info").status_code == 401
        r = client.post("/login", data={"username": "ann", "password": PASSWORD})
        assert r.status_code == 200
        names = session_cookie_names(app.cookie_id)
        assert set(names) <= set(r.cookies.keys())
        assert app.tokens[r.cookies[names[1]]] == "ann"  # the token store the middleware looks in
        info = client.get("/gradio_api/info")
        assert info.status_code == 200 and "next_task" in info.text
        # Gradio still inlines the schema in the shape our pattern strips (seen by a logged-in client)
        assert _API_INFO.search(client.get("/").content)
    finally:
        gr.close_all()
