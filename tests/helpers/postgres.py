"""A throwaway PostgreSQL cluster for the suite: Debian's server in a temporary directory, on a free
port on 127.0.0.1, fsync off (a server crash still loses no commit; only a machine crash
could, and the cluster is thrown away). ``initdb`` and the server refuse to run as root, so as root they run
as the ``postgres`` user the package creates. Each test gets a database of its own."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path


def missing() -> str | None:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "the psycopg package is not installed (pip install -e '.[test]')"
    if not _bin():
        return "no PostgreSQL server (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no postgres user to run the server as"
    return None


def _bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    path = found[-1] if found else shutil.which("initdb")
    return Path(path).parent if path else None


class Cluster:
    def __init__(self) -> None:
        bin_dir = _bin()
        assert bin_dir is not None
        self.root = Path(tempfile.mkdtemp(prefix="chatkit-lab-pg-"))
        self.data = self.root / "data"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._ctl = [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(self.data)]
        subprocess.run([*as_postgres, str(bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync"],
                       check=True, capture_output=True)
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        # The server writes to its log file, not to our pipes (which it would hold open).
        self._start = [*self._ctl, "-o", options, "-l", str(self.root / "log"), "-w", "start"]
        subprocess.run(self._start, check=True, capture_output=True)
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def new_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn, autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def restart(self) -> None:
        """Stop the server at once (open connections break) and start it again."""
        self.halt()
        self.resume()

    def halt(self) -> None:
        """Stop the server at once, keeping its data (``resume`` starts it again)."""
        subprocess.run([*self._ctl, "-m", "immediate", "-w", "stop"], check=True, capture_output=True)

    def resume(self) -> None:
        subprocess.run(self._start, check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run([*self._ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
