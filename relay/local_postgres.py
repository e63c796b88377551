"""A throwaway PostgreSQL cluster on loopback, for tests and ``lookout bench relay``.

``initdb`` into a temporary folder and ``pg_ctl start`` on a free 127.0.0.1 port, password
authentication over TCP (the password goes to the client through an environment variable, as in
production), and ``pg_ctl stop`` at the end. PostgreSQL refuses to run as root, so as root the
cluster runs as the ``postgres`` system user (created by Debian's package), else ``nobody``.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from lookout.errors import InputError
from lookout.log import get_logger
from lookout.mosquitto import free_port

log = get_logger(__name__)

PASSWORD_ENV = "LOOKOUT_TEST_PGPASSWORD"
SUPERUSER = "lookout"


def find_pg_bin() -> Path | None:
    """The folder with ``initdb`` and ``pg_ctl`` ($LOOKOUT_PG_BIN, PATH, Debian's /usr/lib/postgresql/N/bin)."""
    env = os.environ.get("LOOKOUT_PG_BIN")
    candidates = [env] if env else []
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    for folder in candidates:
        if folder and os.access(Path(folder) / "initdb", os.X_OK) and os.access(Path(folder) / "pg_ctl", os.X_OK):
            return Path(folder)
    return None


def _version(path: str) -> int:
    try:
        return int(Path(path).parent.name)
    except ValueError:
        return 0


def _run_as() -> pwd.struct_passwd | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise InputError("postgresql", "running as root and neither a 'postgres' nor a 'nobody' user exists")


class LocalPostgres:
    """One cluster; :attr:`dsn` (no password) and :attr:`password` connect to its ``lookout`` database."""

    def __init__(self, *, fsync: bool = True) -> None:
        found = find_pg_bin()
        if found is None:
            raise InputError(
                "postgresql", "initdb/pg_ctl not found (apt-get install postgresql, or set LOOKOUT_PG_BIN)"
            )
        self.bin: Path = found
        self.user = _run_as()
        self.fsync = fsync
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self.workdir = Path(tempfile.mkdtemp(prefix="lookout-pg-"))
        self.data = self.workdir / "data"
        self.log_path = self.workdir / "server.log"
        self._started = False

    def dsn(self, dbname: str = "lookout") -> str:
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={SUPERUSER} connect_timeout=5"

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        owner: dict[str, Any] = (
            {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []} if self.user else {}
        )
        return subprocess.run(
            [str(self.bin / tool), *args],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            check=check,
            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "TZ": "UTC"},
            **owner,
        )

    def start(self) -> LocalPostgres:
        if self.user:
            os.chown(self.workdir, self.user.pw_uid, self.user.pw_gid)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.user:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        try:
            self._pg(
                "initdb", "-D", str(self.data), "-U", SUPERUSER, "--pwfile", str(pwfile), "-E", "UTF8",
                "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256", "--no-instructions",
            )  # fmt: skip
            pwfile.unlink()
            self.port = free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.workdir}"
                f" -c fsync={'on' if self.fsync else 'off'} -c max_connections=200 -c shared_buffers=64MB"
            )
            self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-o", options, "-w", "-t", "60", "start")
            self._started = True
            self._pg("createdb", "-h", str(self.workdir), "-p", str(self.port), "-U", SUPERUSER, "lookout")
        except subprocess.CalledProcessError as err:
            detail = (err.stderr or err.stdout or "").strip().splitlines()[-3:]
            self.stop()
            raise InputError("postgresql", f"{Path(err.cmd[0]).name} failed: {' '.join(detail)}") from None
        except BaseException:  # never leave a server running behind a failed start
            self.stop()
            raise
        log.debug("postgres.started", port=self.port, data=str(self.data))
        return self

    def create_database(self, name: str) -> str:
        """A new empty database in this cluster; its DSN."""
        self._pg("createdb", "-h", str(self.workdir), "-p", str(self.port), "-U", SUPERUSER, name)
        return self.dsn(name)

    def stop(self) -> None:
        if self._started or (self.data / "postmaster.pid").exists():
            self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)
            self._started = False
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
