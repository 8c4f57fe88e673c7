"""The annotation database (SQLAlchemy): users, tasks, assignments, labels with revisions, and an
append-only audit log. SQLite by default (one file, WAL journal, created on first open) or any
SQLAlchemy URL (PostgreSQL for a team). The schema carries a version number checked on open.

Concurrency rules, kept by the database rather than by the app process:
- an assignment is unique per (task, user), and a task is handed out only while it has fewer
  than `overlap` live assignments — checked and written in one transaction that holds the
  database's write lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory
  lock that every hand-out takes first, so each one counts after the previous one committed);
- a label carries the client's request id, unique: a repeated submit returns the stored label;
- a revision adds a row (version + 1); nothing is overwritten, and audit rows are never updated.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import bcrypt
from sqlalchemy import (
    create_engine,
    event,
    func,
    select,
    text,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, DatabaseError, IntegrityError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from annotation_ui.schema import FLAGS, ROLES, Assignment, Audit, Base, Label, Task, User, migrate, now
from common.data import DataError

HANDOUT_LOCK = 0x726C6866  # PostgreSQL advisory lock key taken by every hand-out


class StoreError(DataError):
    """A request the store refuses (unknown user, bad ranks, …): the message says why."""


def database_url(db: str) -> str:
    """A file path → a SQLite URL; a URL (postgresql://…, sqlite:///…) as given."""
    return db if "://" in db else f"sqlite:///{Path(db).resolve()}"


@dataclass
class Handout:
    """A task as one annotator sees it: responses in their own shuffled order, no model ids."""

    task_id: int
    prompt: list
    responses: list[str]  # display order
    order: list[int]  # display position → original response index
    domain: str
    content_notice: bool


class Store:
    def __init__(self, db: str):
        self.url = database_url(db)
        self.sqlite = self.url.startswith("sqlite")
        self._local = threading.local()
        self._write_lock = threading.Lock()
        try:
            self.engine: Engine = create_engine(self.url, future=True, pool_size=20, max_overflow=40)
        except (ArgumentError, NoSuchModuleError) as err:
            raise StoreError(f"--db {db!r}: not a database URL SQLAlchemy can open ({err}); use a file path, "
                             "sqlite:///path or postgresql+psycopg://user:password@host/dbname") from None
        if self.sqlite:
            self._make_folder(db)

            @event.listens_for(self.engine, "connect")
            def _pragmas(conn, _record):  # durable and concurrent: WAL, wait on locks
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA busy_timeout=10000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()
                conn.isolation_level = None  # we issue BEGIN ourselves (IMMEDIATE for writers)

            @event.listens_for(self.engine, "begin")
            def _begin(conn):
                conn.exec_driver_sql(getattr(self._local, "begin", "BEGIN IMMEDIATE"))
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        shown = self.engine.url.render_as_string(hide_password=True)
        try:
            Base.metadata.create_all(self.engine)
            with self.session() as s:
                migrate(s, shown, StoreError)
        except (OperationalError, DatabaseError) as err:
            reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
            raise StoreError(f"{shown}: cannot open the database: {reason}") from None

    def _make_folder(self, db: str) -> None:
        """A SQLite file is created on first use, and so is its folder (`runs/annotation/` does not
        exist in a fresh clone until something makes it)."""
        try:
            Path(self.engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"--db {db!r}: cannot create its folder ({err})") from None

    @contextmanager
    def session(self, write: bool = True):
        """One transaction: committed on success, rolled back on any error.

        SQLite: writers take this process's write lock first (FIFO-ish, no busy-wait), then
        BEGIN IMMEDIATE (which still guards against other processes); readers BEGIN DEFERRED
        and run beside the writer (WAL). Under many concurrent annotators this keeps the submit
        latency tail short — SQLite's own busy handler sleeps in growing steps, unfairly.
        """
        if not self.sqlite:
            with self.sessions() as s, s.begin():
                yield s
            return
        self._local.begin = "BEGIN IMMEDIATE" if write else "BEGIN"
        with (self._write_lock if write else nullcontext()), self.sessions() as s, s.begin():
            yield s

    def audit(self, s: Session, event_name: str, user_id: int | None, task_id: int | None = None, **detail) -> None:
        s.add(Audit(event=event_name, user_id=user_id, task_id=task_id, detail=detail))

    # ------------------------------------------------------------------ users

    def add_user(self, name: str, password: str, role: str = "annotator") -> int:
        if role not in ROLES:
            raise StoreError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if not name or len(name) > 64:
            raise StoreError("user name must be 1–64 characters")
        if len(password) < 8 or len(password.encode()) > 72:
            raise StoreError("password must be at least 8 characters and at most 72 bytes (bcrypt's limit)")
        with self.session() as s:
            if s.scalar(select(User).where(User.name == name)) is not None:
                raise StoreError(f"user {name!r} already exists")
            user = User(name=name, role=role, password_hash=bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode())
            s.add(user)
            s.flush()
            self.audit(s, "user_add", None, name=name, role=role)
            return user.id

    def set_active(self, name: str, active: bool) -> None:
        with self.session() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None:
                raise StoreError(f"no user {name!r}")
            user.active = active
            self.audit(s, "user_enable" if active else "user_disable", None, name=name)

    def users(self) -> list[User]:
        with self.session(write=False) as s:
            return list(s.scalars(select(User).order_by(User.id)))

    def user(self, name: str) -> User | None:
        with self.session(write=False) as s:
            return s.scalar(select(User).where(User.name == name))

    def authenticate(self, name: str, password: str) -> User | None:
        """The active user with these credentials, else None (a failed attempt is audited too).
        The slow bcrypt check runs outside any transaction; only the audit row is written."""
        user = self.user(name)
        ok = user is not None and user.active and bcrypt.checkpw(password.encode(), user.password_hash.encode())
        with self.session() as s:
            self.audit(s, "login" if ok else "login_failed", user.id if user else None, name=name)
        return user if ok else None

    # ------------------------------------------------------------------ tasks

    def add_tasks(self, tasks: list[dict], batch: str | None = None) -> list[int]:
        """All or nothing: one transaction for the whole import; `batch` names it (≤ 64 characters)."""
        if batch is not None and not 0 < len(batch) <= 64:
            raise StoreError("a batch name must be 1–64 characters")
        with self.session() as s:
            rows = [Task(**t, batch=batch) for t in tasks]
            s.add_all(rows)
            s.flush()
            self.audit(s, "import", None, count=len(rows), batch=batch)
            return [r.id for r in rows]

    def next_task(self, user_id: int, overlap: int, ttl_minutes: float = 30.0, gold_rate: float = 0.0,
                  rng=None) -> Handout | None:
        """The user's open assignment, else a new one: a task this user never had, with fewer than
        `overlap` live (open or done) assignments, highest priority first, then oldest first.
        Expired ones go back to the pool.

        With probability `gold_rate` the new task is a gold task (known answer) the user has not
        had — gold tasks go to every annotator, outside the overlap; the annotator can't tell.
        """
        rng = rng or secrets.SystemRandom()
        with self.session() as s:
            if not self.sqlite:  # serialise hand-outs (SQLite's BEGIN IMMEDIATE already does)
                s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": HANDOUT_LOCK})
            t = now()
            for a in s.scalars(select(Assignment).where(Assignment.status == "open", Assignment.expires_at < t)):
                a.status = "expired"
            mine = s.scalar(select(Assignment).where(Assignment.user_id == user_id, Assignment.status == "open"))
            if mine is None:
                live = (select(Assignment.task_id, func.count().label("n"))
                        .where(Assignment.status.in_(("open", "done"))).group_by(Assignment.task_id).subquery())
                had = select(Assignment.task_id).where(Assignment.user_id == user_id)
                regular = (select(Task).outerjoin(live, live.c.task_id == Task.id)
                           .where(Task.gold_ranks.is_(None), func.coalesce(live.c.n, 0) < overlap, Task.id.not_in(had))
                           .order_by(Task.priority.desc(), Task.id).limit(1))
                task = s.scalar(regular)
                if task is None:
                    return None  # no regular work left: gold tasks alone would measure nothing
                if gold_rate > 0 and rng.random() < gold_rate:
                    gold = s.scalar(select(Task).where(Task.gold_ranks.is_not(None), Task.id.not_in(had))
                                    .order_by(Task.id).limit(1))
                    task = gold or task
                order = list(range(len(task.responses)))
                rng.shuffle(order)
                mine = Assignment(task_id=task.id, user_id=user_id, order=order,
                                  expires_at=t + dt.timedelta(minutes=ttl_minutes))
                s.add(mine)
                s.flush()
            task = s.get(Task, mine.task_id)
            return Handout(task.id, task.prompt, [task.responses[i] for i in mine.order], mine.order, task.domain,
                           task.content_notice)

    def handout(self, user_id: int, task_id: int) -> Handout:
        """A task this user was given, in their own display order (to revise their label)."""
        with self.session(write=False) as s:
            a = s.scalar(select(Assignment).where(Assignment.task_id == task_id, Assignment.user_id == user_id))
            if a is None:
                raise StoreError(f"task {task_id} was never assigned to this user")
            task = s.get(Task, task_id)
            return Handout(task.id, task.prompt, [task.responses[i] for i in a.order], a.order, task.domain,
                           task.content_notice)

    # ------------------------------------------------------------------ labels

    def submit(self, user_id: int, task_id: int, ranks: list[int] | None, request_id: str, scores: list[int] | None = None,
               flag: str | None = None, note: str = "", event_name: str = "submit") -> Label:
        """Store a label (ranks in the task's original response order) — or a flag — once.

        A repeated request id returns the stored label unchanged (idempotent). A label for a task
        the user already labelled is a revision: a new row, version + 1.
        """
        try:
            return self._submit(user_id, task_id, ranks, request_id, scores, flag, note, event_name)
        except IntegrityError:
            # PostgreSQL: the same request id (or revision) committed by a concurrent call first
            with self.session() as s:
                existing = s.scalar(select(Label).where(Label.request_id == request_id))
            if existing is None or existing.user_id != user_id:
                raise StoreError("a concurrent submit for this task won; reload and try again") from None
            return existing

    def _submit(self, user_id, task_id, ranks, request_id, scores, flag, note, event_name) -> Label:
        with self.session() as s:
            existing = s.scalar(select(Label).where(Label.request_id == request_id))
            if existing is not None:
                if existing.user_id != user_id:
                    raise StoreError("request id already used by another user")
                return existing
            task = s.get(Task, task_id)
            if task is None:
                raise StoreError(f"no task {task_id}")
            assignment = s.scalar(select(Assignment).where(Assignment.task_id == task_id, Assignment.user_id == user_id))
            if assignment is None:
                raise StoreError(f"task {task_id} is not assigned to this user")
            k = len(task.responses)
            if flag is None:
                check_ranks(ranks, k)
                if scores is not None and (not isinstance(scores, list) or len(scores) != k or any(
                        isinstance(x, bool) or not isinstance(x, int) or not 1 <= x <= 5 for x in scores)):
                    raise StoreError(f"scores must be {k} integers from 1 to 5")
            elif flag not in FLAGS:
                raise StoreError(f"flag must be one of {', '.join(FLAGS)}")
            last = s.scalar(select(func.max(Label.version)).where(Label.task_id == task_id, Label.user_id == user_id)) or 0
            label = Label(task_id=task_id, user_id=user_id, version=last + 1, ranks=ranks, scores=scores, flag=flag,
                          note=note, request_id=request_id)
            s.add(label)
            assignment.status = "done"
            self.audit(s, "revise" if last else event_name, user_id, task_id, version=last + 1, flag=flag)
            s.flush()
            return label

    def skip(self, user_id: int, task_id: int) -> None:
        with self.session() as s:
            a = s.scalar(select(Assignment).where(Assignment.task_id == task_id, Assignment.user_id == user_id))
            if a is None or a.status != "open":
                raise StoreError(f"task {task_id} is not open for this user")
            a.status = "skipped"
            self.audit(s, "skip", user_id, task_id)

    def labels(self, user_id: int | None = None, latest_only: bool = True) -> list[Label]:
        """Labels (of one user, or all: admin); by default the latest version of each (task, user)."""
        with self.session(write=False) as s:
            query = select(Label).order_by(Label.task_id, Label.user_id, Label.version)
            if user_id is not None:
                query = query.where(Label.user_id == user_id)
            rows = list(s.scalars(query))
        if not latest_only:
            return rows
        latest: dict[tuple[int, int], Label] = {}
        for r in rows:
            latest[(r.task_id, r.user_id)] = r
        return list(latest.values())

    def progress(self, user_id: int, overlap: int) -> dict[str, int]:
        """done = tasks this user labelled; left = their open task + tasks they could still be given."""
        with self.session(write=False) as s:
            done = s.scalar(select(func.count(func.distinct(Label.task_id))).where(Label.user_id == user_id)) or 0
            had = select(Assignment.task_id).where(Assignment.user_id == user_id)
            live = (select(Assignment.task_id, func.count().label("n"))
                    .where(Assignment.status.in_(("open", "done"))).group_by(Assignment.task_id).subquery())
            left = s.scalar(select(func.count()).select_from(Task).outerjoin(live, live.c.task_id == Task.id)
                            .where(Task.gold_ranks.is_(None), func.coalesce(live.c.n, 0) < overlap,
                                   Task.id.not_in(had))) or 0
            current = s.scalar(select(func.count()).select_from(Assignment)
                               .where(Assignment.user_id == user_id, Assignment.status == "open")) or 0
            return {"done": done, "left": left + current}

    def overview(self) -> dict:
        """Admin figures: tasks, labels, per annotator done / skipped / flagged / open, and per named
        import batch (a labelling round) its tasks — the round's budget —, how many are labelled,
        and its priority range."""
        with self.session(write=False) as s:
            names = {u.id: u.name for u in s.scalars(select(User))}
            per_user: dict[str, dict[str, int]] = {}
            for uid, status, n in s.execute(select(Assignment.user_id, Assignment.status, func.count())
                                            .group_by(Assignment.user_id, Assignment.status)):
                per_user.setdefault(names[uid], {})[status] = n
            for uid, n in s.execute(select(Label.user_id, func.count()).where(Label.flag.is_not(None))
                                    .group_by(Label.user_id)):
                per_user.setdefault(names[uid], {})["flagged"] = n
            labelled = dict(s.execute(select(Task.batch, func.count(func.distinct(Label.task_id)))
                                      .join(Label, Label.task_id == Task.id).group_by(Task.batch)).all())
            batches = [{"batch": b, "tasks": n, "labelled": labelled.get(b, 0), "priority_max": hi, "priority_min": lo,
                        "created": first.isoformat(timespec="seconds")}
                       for b, n, hi, lo, first in s.execute(
                           select(Task.batch, func.count(), func.max(Task.priority), func.min(Task.priority),
                                  func.min(Task.created_at)).where(Task.batch.is_not(None), Task.gold_ranks.is_(None))
                           .group_by(Task.batch))]
            return {
                "batches": sorted(batches, key=lambda b: (b["created"], b["batch"])),  # oldest first
                "tasks": s.scalar(select(func.count()).select_from(Task)) or 0,
                "gold_tasks": s.scalar(select(func.count()).select_from(Task).where(Task.gold_ranks.is_not(None))) or 0,
                "labels": s.scalar(select(func.count()).select_from(Label)) or 0,
                "labelled_tasks": s.scalar(select(func.count(func.distinct(Label.task_id)))) or 0,
                "per_annotator": per_user,
            }

    def tasks(self) -> list[Task]:
        with self.session(write=False) as s:
            return list(s.scalars(select(Task).order_by(Task.id)))

    def audit_log(self) -> list[Audit]:
        with self.session(write=False) as s:
            return list(s.scalars(select(Audit).order_by(Audit.id)))


def check_ranks(ranks, k: int) -> None:
    """Ranks of K responses: K integers, 1 = best, ties allowed, no gaps (dense ranking)."""
    if not isinstance(ranks, list) or len(ranks) != k or not all(isinstance(r, int) and not isinstance(r, bool) for r in ranks):
        raise StoreError(f"ranks must be a list of {k} integers")
    used = sorted(set(ranks))
    if used != list(range(1, len(used) + 1)):
        raise StoreError(f"ranks must start at 1 without gaps (ties share a rank), got {ranks}")
