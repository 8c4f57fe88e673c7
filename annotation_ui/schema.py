"""The annotation database's schema: its tables (SQLAlchemy ORM), the schema version every database
carries, and the migrations that bring an older database up to it (applied in order on open)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

SCHEMA_VERSION = 3  # 2: tasks.batch; 3: tasks.priority
ROLES = ("annotator", "admin")
FLAGS = ("unsafe", "not_rankable", "broken")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Meta(Base):
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=now)


class Task(Base):
    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt: Mapped[list] = mapped_column(JSON)  # chat messages ending with a user turn
    responses: Mapped[list] = mapped_column(JSON)  # K ≥ 2 strings
    model_ids: Mapped[list | None] = mapped_column(JSON(none_as_null=True), nullable=True)  # hidden from annotators
    domain: Mapped[str] = mapped_column(String(32), default="general")
    source: Mapped[str] = mapped_column(String(256), default="")  # file:line it came from
    content_notice: Mapped[bool] = mapped_column(Boolean, default=False)  # e.g. HH red-teaming text
    gold_ranks: Mapped[list | None] = mapped_column(JSON(none_as_null=True), nullable=True)  # a gold task's known answer
    # the import it came with, when named: "eval:<id>" for an evaluation's blind comparisons
    batch: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # handed out highest first (ties: oldest first); the closed loop sets it to how unsure the
    # reward model is about the task's ranking (annotation_ui/acquisition.py); 0 for a plain import
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=now)


# schema upgrades, applied in order to a database of an older version: version → statements
MIGRATIONS = {
    2: ["ALTER TABLE tasks ADD COLUMN batch VARCHAR(64)", "CREATE INDEX ix_tasks_batch ON tasks (batch)"],
    3: ["ALTER TABLE tasks ADD COLUMN priority FLOAT NOT NULL DEFAULT 0"],
}


class Assignment(Base):
    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("task_id", "user_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    order: Mapped[list] = mapped_column(JSON)  # this annotator's display order of the responses
    status: Mapped[str] = mapped_column(String(16), default="open")  # open | done | skipped | expired
    assigned_at: Mapped[dt.datetime] = mapped_column(DateTime, default=now)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Label(Base):
    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("task_id", "user_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    version: Mapped[int] = mapped_column(Integer)  # 1, then 2, 3… for revisions
    ranks: Mapped[list | None] = mapped_column(JSON(none_as_null=True), nullable=True)  # per response, original order; 1 = best
    scores: Mapped[list | None] = mapped_column(JSON(none_as_null=True), nullable=True)  # optional 1–5 per response
    flag: Mapped[str | None] = mapped_column(String(16), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    request_id: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=now)


class Audit(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime, default=now)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    event: Mapped[str] = mapped_column(String(32))
    task_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)


def migrate(s: Session, shown: str, error: type[Exception]) -> None:
    """Stamp a new database with SCHEMA_VERSION, or bring an older one up to it; a newer one is
    `error` (this code cannot read it)."""
    version = s.get(Meta, "schema_version")
    if version is None:
        s.add(Meta(key="schema_version", value=str(SCHEMA_VERSION)))
    elif int(version.value) > SCHEMA_VERSION:
        raise error(f"{shown}: schema version {version.value} is newer than this code's {SCHEMA_VERSION}; upgrade rlhfkit")
    elif int(version.value) < SCHEMA_VERSION:
        for v in range(int(version.value) + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[v]:
                s.execute(text(statement))
        version.value = str(SCHEMA_VERSION)
