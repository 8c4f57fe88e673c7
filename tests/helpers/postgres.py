"""A private PostgreSQL server for the storage tests, from Debian's `postgresql` package.

initdb + pg_ctl into a temporary folder, listening on a free loopback port (and a socket in that
folder). PostgreSQL refuses to run as root, so under root (CI) it runs as the package's
`postgres` user through `runuser`.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


def binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install -y postgresql (.ci/run does)")
    return Path(found[-1]).parent


class PostgresServer:
    def __init__(self, port: int):
        self.bin = binaries()
        # its own folder under /tmp: pytest's tmp folders are private to root, PostgreSQL runs as postgres
        self.folder = Path(tempfile.mkdtemp(prefix="rlhfkit-pg-"))
        self.port = port
        self.data = self.folder / "data"
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.as_user:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w",
                  "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=on", "start")
        return self

    def stop(self) -> None:
        subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(self.folder, ignore_errors=True)

    def new_database(self) -> str:
        """A fresh empty database; its SQLAlchemy URL (psycopg 3 driver)."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        for attempt in range(20):
            try:
                with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                                     autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{name}"')
                break
            except psycopg.OperationalError:
                if attempt == 19:
                    raise
                time.sleep(0.5)
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"
