"""The annotation app's options: one dataclass, filled from `configs/annotation/*.yaml` + command line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from common.config import param

LANGUAGES = ("en", "zh-CN")


@dataclass
class AnnotationConfig:
    """How the labelling server runs and hands out work."""

    db: str = param("runs/annotation/labels.db",
                    help="SQLite file (created on first start) or a database URL: postgresql+psycopg://user@host/db")
    host: str = param("127.0.0.1", help="address to listen on; 0.0.0.0 for a team (put a TLS reverse proxy in front)")
    port: int = param(7860, help="port to listen on")
    root_path: str = param("", help="URL prefix when a reverse proxy serves the app under a sub-path, e.g. /annotate")
    overlap: int = param(3, help="N: distinct annotators per task (agreement needs N ≥ 2)")
    assignment_ttl_minutes: float = param(30.0, help="an assignment left open this long goes back to the pool")
    gold_rate: float = param(0.0, help="share of hand-outs that are gold tasks (known answer), 0–1")
    scores: bool = param(True, help="offer the optional 1–5 score per response")
    guidelines_dir: str = param("configs/annotation/guidelines",
                                help="per-domain guidelines: <domain>.<language>.md (general.en.md is the fallback)")
    export_dir: str = param("runs/annotation/exports", help="where the admin page writes exports (one folder each)")
    default_language: Literal["en", "zh-CN"] = param(
        "en", help="page language when the browser asks for neither English nor Chinese")
    concurrency_limit: int = param(32, help="label events handled at once (threads); the database serialises writes")
    agreement_floor: float | None = param(
        0.75, help="labels are trusted from this agreement up (κ/α of the round, an annotator's gold accuracy and "
        "agreement with the majority): the admin tab warns below it; null = no floor")
    leave_out_below_floor: bool = param(
        False, help="the admin tab's export leaves out annotators under agreement_floor (the CLI: export --floor)")

    def __post_init__(self):
        if self.overlap < 1:
            raise ValueError(f"overlap must be ≥ 1, got {self.overlap}")
        if not 0.0 <= self.gold_rate <= 1.0:
            raise ValueError(f"gold_rate must lie in [0, 1], got {self.gold_rate}")
        if self.assignment_ttl_minutes <= 0:
            raise ValueError(f"assignment_ttl_minutes must be > 0, got {self.assignment_ttl_minutes}")
        if self.agreement_floor is not None and not 0 < self.agreement_floor <= 1:
            raise ValueError(f"agreement_floor must lie in (0, 1] (or null), got {self.agreement_floor}")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port must be 1–65535, got {self.port}")
