"""Console accounts, sessions and login throttling, in the console's own SQLite file.

- Users have one role: ``reviewer`` (review alerts, search), ``gallery_admin`` (galleries, search) or ``admin``
  (everything, accounts and the audit log). Passwords are hashed with Argon2id (argon2-cffi's defaults).
- A session is a random token in an http-only, SameSite=Strict cookie; only its SHA-256 is stored, so a copy of
  the database opens no session. Each session has its own CSRF token, checked on every form.
- Failed logins are counted per account and per client address; past ``max_failures`` within ``window_s`` that
  account or address is refused for ``lockout_s``, whatever the password.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from lookout.console.config import LoginSettings, SessionSettings
from lookout.errors import InputError
from lookout.log import get_logger

log = get_logger(__name__)

ROLES = ("reviewer", "gallery_admin", "admin")
PERMISSIONS: dict[str, frozenset[str]] = {
    "reviewer": frozenset({"review", "search", "galleries.view", "fleet"}),
    "gallery_admin": frozenset({"search", "galleries.view", "galleries.change", "fleet"}),
    "admin": frozenset({"review", "search", "galleries.view", "galleries.change", "fleet", "audit", "accounts"}),
}
MIN_PASSWORD = 12
USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    token_sha256 TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS login_failures (
    key TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS login_failures_key ON login_failures(key, at);
"""


@dataclass(frozen=True)
class User:
    username: str
    role: str

    def may(self, permission: str) -> bool:
        return permission in PERMISSIONS.get(self.role, frozenset())


@dataclass(frozen=True)
class Session:
    user: User
    csrf: str
    token_sha256: str


class LoginRefused(Exception):
    """Wrong credentials or too many attempts. ``str()`` is what the login page shows."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_username(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 64 or not set(name) <= USERNAME_CHARS:
        raise InputError(f"user name {name!r}", "must be 1-64 letters, digits, '.', '_', '-' or '@'")
    return name


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InputError("password", f"must be at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise InputError("password", "must be at most 1024 characters")
    return password


class Accounts:
    """Users, sessions and login limits. One instance per process; thread-safe."""

    def __init__(
        self,
        path: Path,
        sessions: SessionSettings | None = None,
        login: LoginSettings | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.sessions = sessions or SessionSettings()
        self.login_limits = login or LoginSettings()
        self.clock = clock
        self._hasher = PasswordHasher()
        self._dummy: str | None = None  # hashed at the first unknown user name, so a miss costs what a hit costs
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        path.chmod(0o600)

    def _x(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def _dummy_hash(self) -> str:
        if self._dummy is None:
            self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        return self._dummy

    # -- users -------------------------------------------------------------------------------

    def add_user(self, username: str, role: str, password: str, *, replace: bool = False) -> User:
        username = check_username(username)
        if role not in ROLES:
            raise InputError(f"role {role!r}", f"must be one of {', '.join(ROLES)}")
        digest = self._hasher.hash(check_password(password))
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        try:
            self._x(
                f"{verb} INTO users(username, role, password_hash, created_at) VALUES (?,?,?,?)",
                (username, role, digest, self.clock()),
            )
        except sqlite3.IntegrityError:
            raise InputError(
                f"user {username!r}", "exists already (--replace to set a new password and role)"
            ) from None
        if replace:
            self._x("DELETE FROM sessions WHERE username=?", (username,))
        log.info("account.saved", username=username, role=role)
        return User(username, role)

    def change_password(self, session: Session, current: str, new: str) -> None:
        """The user's own password, the current one checked first; every other session of theirs ends."""
        row = self._x("SELECT password_hash FROM users WHERE username=?", (session.user.username,)).fetchone()
        try:
            ok = row is not None and self._hasher.verify(row[0], current)
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            raise InputError("current password", "is not right")
        digest = self._hasher.hash(check_password(new))
        self._x("UPDATE users SET password_hash=? WHERE username=?", (digest, session.user.username))
        self._x(
            "DELETE FROM sessions WHERE username=? AND token_sha256!=?", (session.user.username, session.token_sha256)
        )
        log.info("account.password_changed", username=session.user.username)

    def users(self) -> list[tuple[User, float, bool]]:
        rows = self._x("SELECT username, role, created_at, disabled FROM users ORDER BY username").fetchall()
        return [(User(r[0], r[1]), r[2], bool(r[3])) for r in rows]

    def set_disabled(self, username: str, disabled: bool) -> None:
        cur = self._x("UPDATE users SET disabled=? WHERE username=?", (int(disabled), username))
        if cur.rowcount != 1:
            raise InputError(f"user {username!r}", "no such user")
        if disabled:
            self._x("DELETE FROM sessions WHERE username=?", (username,))

    # -- login -------------------------------------------------------------------------------

    def _failures(self, key: str, now: float) -> list[float]:
        since = now - max(self.login_limits.window_s, self.login_limits.lockout_s)
        rows = self._x("SELECT at FROM login_failures WHERE key=? AND at>=? ORDER BY at", (key, since)).fetchall()
        return [r[0] for r in rows]

    def _locked_for(self, key: str, now: float) -> float:
        """Seconds left of a lockout on ``key`` (0: not locked)."""
        limits = self.login_limits
        times = self._failures(key, now)
        for i in range(len(times) - limits.max_failures + 1):
            window = times[i : i + limits.max_failures]
            if window[-1] - window[0] <= limits.window_s:
                left = window[-1] + limits.lockout_s - now
                if left > 0:
                    return left
        return 0.0

    def login(self, username: str, password: str, address: str) -> str:
        """A new session token for valid credentials; raises LoginRefused otherwise."""
        now = self.clock()
        keys = (f"user:{username.strip().lower()}", f"addr:{address}")
        wait = max(self._locked_for(k, now) for k in keys)
        if wait > 0:
            log.warning("login.throttled", username=username[:64], address=address, wait_s=round(wait))
            raise LoginRefused(f"Too many failed logins: try again in {int(wait) + 1} s.")
        row = self._x(
            "SELECT username, role, password_hash, disabled FROM users WHERE username=?", (username.strip(),)
        ).fetchone()
        ok = False
        try:
            ok = self._hasher.verify(row[2] if row else self._dummy_hash(), password) and row is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok or row[3]:
            for key in keys:
                self._x("INSERT INTO login_failures(key, at) VALUES (?,?)", (key, now))
            log.warning("login.failed", username=username[:64], address=address)
            raise LoginRefused("Wrong user name or password.")
        if self._hasher.check_needs_rehash(row[2]):
            self._x("UPDATE users SET password_hash=? WHERE username=?", (self._hasher.hash(password), row[0]))
        self._x("DELETE FROM login_failures WHERE key=?", (keys[0],))
        token = secrets.token_urlsafe(32)
        self._x(
            "INSERT INTO sessions(token_sha256, username, csrf, created_at, last_seen_at) VALUES (?,?,?,?,?)",
            (_digest(token), row[0], secrets.token_urlsafe(32), now, now),
        )
        log.info("login.ok", username=row[0], address=address)
        return token

    def session(self, token: str | None) -> Session | None:
        """The live session of ``token`` (its idle time restarts), or None."""
        if not token:
            return None
        now, digest = self.clock(), _digest(token)
        row = self._x(
            "SELECT s.username, u.role, s.csrf, s.created_at, s.last_seen_at, u.disabled FROM sessions s"
            " JOIN users u ON u.username = s.username WHERE s.token_sha256=?",
            (digest,),
        ).fetchone()
        if row is None:
            return None
        expired = now - row[4] > self.sessions.idle_s or now - row[3] > self.sessions.absolute_s
        if expired or row[5]:
            self._x("DELETE FROM sessions WHERE token_sha256=?", (digest,))
            return None
        self._x("UPDATE sessions SET last_seen_at=? WHERE token_sha256=?", (now, digest))
        return Session(User(row[0], row[1]), row[2], digest)

    def logout(self, session: Session) -> None:
        self._x("DELETE FROM sessions WHERE token_sha256=?", (session.token_sha256,))

    def purge(self) -> None:
        now = self.clock()
        self._x(
            "DELETE FROM sessions WHERE last_seen_at<? OR created_at<?",
            (now - self.sessions.idle_s, now - self.sessions.absolute_s),
        )
        self._x(
            "DELETE FROM login_failures WHERE at<?", (now - self.login_limits.window_s - self.login_limits.lockout_s,)
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()
