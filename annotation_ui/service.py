"""What a logged-in user may do, independent of the page: the browser app and the API both call
these methods with the user name the server session vouches for (never a name from a form).

Ranks cross this boundary in the annotator's *display* order (the shuffled order they were
shown); the store keeps them in the task's original order: `original[order[p]] = display[p]`.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from pathlib import Path

from annotation_ui.config import AnnotationConfig
from annotation_ui.store import FLAGS, Handout, Store, StoreError, User


class Forbidden(StoreError):
    """The session's user may not do this (not logged in, disabled, or not an admin)."""


# The most a client may send in each free-text field; longer text is refused, never cut
# (docs/annotation.md lists them). Task texts have their own limit (tasks.MAX_CHARS).
LIMITS = {"note": 2000, "name": 64, "password_bytes": 72, "model": 512, "path": 4096}


def client_int(value, what: str) -> int:
    """An integer sent by a client: an int (not a bool) or a string of digits. A float — 1.5, or
    even 2.0 — is refused, not truncated."""
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreError(f"{what} must be an integer, got {value!r}")
    return value


def client_text(value, what: str, limit: int) -> str:
    """Text sent by a client, at most `limit` characters (None = empty)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise StoreError(f"{what} must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise StoreError(f"{what} is {len(value)} characters; the limit is {limit}")
    return value


def check_request_id(request_id) -> str:
    if not isinstance(request_id, str) or not 8 <= len(request_id) <= 64:
        raise StoreError("request_id must be a string of 8–64 characters")
    return request_id


def dense_ranks(ranks: list, k: int) -> list[int]:
    """Ranks as picked on the page (1 = best, ties share a value, gaps allowed: [1, 1, 3]) →
    dense ranks [1, 1, 2]. Every response must have a rank from 1 to K."""
    if not isinstance(ranks, list) or len(ranks) != k:
        raise StoreError(f"give a rank to each of the {k} responses")
    out = []
    for r in ranks:
        if r is None or r == "":
            raise StoreError(f"give a rank to each of the {k} responses")
        value = client_int(r, f"ranks must be integers 1–{k}; a rank")
        if not 1 <= value <= k:
            raise StoreError(f"ranks must be integers 1–{k}, got {r!r}")
        out.append(value)
    levels = {v: i + 1 for i, v in enumerate(sorted(set(out)))}
    return [levels[v] for v in out]


def to_original(display: list, order: list[int]) -> list:
    original = [None] * len(order)
    for p, i in enumerate(order):
        original[i] = display[p]
    return original


def to_display(original: list, order: list[int]) -> list:
    return [original[i] for i in order]


class Service:
    USER_CACHE_S = 2.0  # a disabled user is refused within this many seconds, logged in or not

    def __init__(self, store: Store, cfg: AnnotationConfig):
        self.store = store
        self.cfg = cfg
        self._users: dict[str, tuple[float, User | None]] = {}

    # ------------------------------------------------------------------ identity

    async def login(self, name: str, password: str) -> bool:
        """Gradio's `auth` callable: bcrypt check against the store (audited there). Async, with
        the ~0.2 s bcrypt check in a worker thread: Gradio calls `auth` on its event loop, and a
        blocking check there would stall every other request while someone logs in."""
        import anyio

        if not isinstance(name, str) or not isinstance(password, str) or len(name) > LIMITS["name"] \
                or len(password.encode()) > LIMITS["password_bytes"]:  # bcrypt reads at most 72 bytes
            return False
        user = await anyio.to_thread.run_sync(self.store.authenticate, name, password)
        return user is not None

    def user(self, name: str | None) -> User:
        if not name:
            raise Forbidden("not logged in")
        hit = self._users.get(name)
        if hit is None or time.monotonic() - hit[0] > self.USER_CACHE_S:
            hit = (time.monotonic(), self.store.user(name))
            self._users[name] = hit
        user = hit[1]
        if user is None or not user.active:
            raise Forbidden(f"user {name!r} is unknown or disabled")
        return user

    def admin(self, name: str | None) -> User:
        user = self.user(name)
        if user.role != "admin":
            raise Forbidden("admins only")
        return user

    # ------------------------------------------------------------------ annotator

    def view(self, h: Handout, previous=None) -> dict:
        """What the page and the API show: display order, no model ids, a fresh request id."""
        view = {"task_id": h.task_id, "prompt": h.prompt, "responses": h.responses, "domain": h.domain,
                "content_notice": h.content_notice, "k": len(h.responses), "order": h.order,
                "request_id": uuid.uuid4().hex, "ranks": None, "scores": None, "revision_of": None}
        if previous is not None:
            view["ranks"] = to_display(previous.ranks, h.order) if previous.ranks else None
            view["scores"] = to_display(previous.scores, h.order) if previous.scores else None
            view["revision_of"] = previous.version
        return view

    def next_task(self, name: str | None) -> dict | None:
        user = self.user(name)
        h = self.store.next_task(user.id, self.cfg.overlap, self.cfg.assignment_ttl_minutes, self.cfg.gold_rate)
        return None if h is None else self.view(h)

    def revise(self, name: str | None, task_id: int) -> dict:
        """One of the user's own labelled tasks, their latest ranks filled in."""
        user = self.user(name)
        latest = {lab.task_id: lab for lab in self.store.labels(user.id)}
        task_id = client_int(task_id, "task_id")
        if task_id not in latest:
            raise StoreError(f"you have no label on task {task_id} to revise")
        return self.view(self.store.handout(user.id, task_id), latest[task_id])

    def submit(self, name: str | None, task_id: int, ranks: list, request_id: str, scores: list | None = None) -> dict:
        """Ranks (and optional 1–5 scores) in display order. The same request id twice stores once."""
        user = self.user(name)
        check_request_id(request_id)
        h = self.store.handout(user.id, client_int(task_id, "task_id"))
        k = len(h.order)
        dense = dense_ranks(ranks, k)
        if scores is not None and any(s is not None and s != "" for s in scores):
            if len(scores) != k or any(s is None or s == "" for s in scores):
                raise StoreError(f"scores are optional, but when given, give one (1–5) to each of the {k} responses")
            scores = to_original([client_int(s, "a score") for s in scores], h.order)
        else:
            scores = None
        label = self.store.submit(user.id, h.task_id, to_original(dense, h.order), request_id, scores=scores)
        return {"task_id": label.task_id, "version": label.version, "request_id": label.request_id}

    def skip(self, name: str | None, task_id: int) -> dict:
        user = self.user(name)
        task_id = client_int(task_id, "task_id")
        self.store.skip(user.id, task_id)
        return {"task_id": task_id, "skipped": True}

    def flag(self, name: str | None, task_id: int, flag: str, note: str, request_id: str) -> dict:
        user = self.user(name)
        if flag not in FLAGS:
            raise StoreError(f"flag must be one of {', '.join(FLAGS)}")
        note = client_text(note, "the note", LIMITS["note"])
        label = self.store.submit(user.id, client_int(task_id, "task_id"), None, check_request_id(request_id), flag=flag,
                                  note=note, event_name="flag")
        return {"task_id": label.task_id, "version": label.version, "flag": flag}

    def progress(self, name: str | None) -> dict:
        user = self.user(name)
        return self.store.progress(user.id, self.cfg.overlap)

    def my_labels(self, name: str | None) -> list[dict]:
        """The user's own labels, every version, ranks in the order they were shown."""
        user = self.user(name)
        rows = []
        orders: dict[int, list[int]] = {}
        for lab in self.store.labels(user.id, latest_only=False):
            if lab.task_id not in orders:
                orders[lab.task_id] = self.store.handout(user.id, lab.task_id).order
            order = orders[lab.task_id]
            rows.append({"task_id": lab.task_id, "version": lab.version,
                         "ranks": to_display(lab.ranks, order) if lab.ranks else None,
                         "scores": to_display(lab.scores, order) if lab.scores else None,
                         "flag": lab.flag, "note": lab.note, "at": lab.created_at.isoformat(timespec="seconds")})
        return rows

    # ------------------------------------------------------------------ admin

    def all_labels(self, name: str | None) -> list[dict]:
        self.admin(name)
        names = {u.id: u.name for u in self.store.users()}
        return [{"task_id": lab.task_id, "annotator": names[lab.user_id], "version": lab.version, "ranks": lab.ranks,
                 "scores": lab.scores, "flag": lab.flag, "note": lab.note,
                 "at": lab.created_at.isoformat(timespec="seconds")}
                for lab in self.store.labels(latest_only=False)]

    def overview(self, name: str | None) -> dict:
        self.admin(name)
        return self.store.overview()

    def quality(self, name: str | None) -> dict:
        from annotation_ui.quality import store_report

        self.admin(name)
        return store_report(self.store)

    def users(self, name: str | None) -> list[dict]:
        self.admin(name)
        return [{"name": u.name, "role": u.role, "active": u.active} for u in self.store.users()]

    def export(self, name: str | None, combine: str = "all") -> tuple[Path, dict]:
        from annotation_ui.export import export

        admin = self.admin(name)
        if combine not in ("all", "majority"):
            raise StoreError(f"combine must be 'all' or 'majority', got {combine!r}")
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path(self.cfg.export_dir) / f"export-{stamp}-{combine}-{uuid.uuid4().hex[:6]}"
        floor = self.cfg.agreement_floor if self.cfg.leave_out_below_floor else None
        counts = export(self.store, out, combine, user_id=admin.id, floor=floor)
        return out, counts

    def generate_tasks(self, name: str | None, prompts_path: str, model: str, k: int, max_new_tokens: int) -> int:
        """K sampled candidates per prompt from a model folder (or spec) → new tasks, all or nothing."""
        from annotation_ui.tasks import generate_tasks

        self.admin(name)
        model = client_text(model, "the model", LIMITS["model"])
        prompts_path = client_text(prompts_path, "the prompt file path", LIMITS["path"])
        tasks = generate_tasks(model, prompts_path, client_int(k, "k"), client_int(max_new_tokens, "max_new_tokens"))
        return len(self.store.add_tasks(tasks))

    def import_tasks(self, name: str | None, path: str, fmt: str = "auto") -> int:
        from annotation_ui.tasks import read_tasks

        self.admin(name)
        tasks, _ = read_tasks(client_text(path, "the task file path", LIMITS["path"]), fmt)
        return len(self.store.add_tasks(tasks))
