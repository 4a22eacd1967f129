"""API keys: created once, stored hashed in DATA_DIR/keys.db, verified in constant time.

A key reads ``rtk_<id>_<secret>``: the id (10 hex characters) is not secret and finds the row;
the secret is 32 random bytes. The row holds only HMAC-SHA256(server secret, key), where the
server secret is 32 random bytes written once to DATA_DIR/server.secret (mode 0600). A stolen
keys.db without that file verifies nothing; a fast HMAC suffices because the keys themselves are
random, not chosen by people (a slow KDF protects guessable passwords, which these are not).

Verification costs the same whether the id exists or not: an unknown id is compared against a
dummy digest with ``hmac.compare_digest``, so response time does not tell a caller which ids are
real. Revoked rows stay in the table, so revoking the last key never turns authentication off
(auth is on as soon as any key was ever created, see :meth:`KeyStore.exists`).

Every call reads the database, so ``python -m rag keys revoke`` takes effect on a running server
with its next request.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.access import ALL, Principal, check_names, check_role, principal
from rag.errors import ConfigError

PREFIX = "rtk_"
_KEY = re.compile(r"^rtk_([0-9a-f]{10})_([A-Za-z0-9_-]{43})$")
_KEY_ANYWHERE = re.compile(r"rtk_[0-9a-f]{10}_[A-Za-z0-9_-]{8,}")


def redact_keys(text: str) -> str:
    """Replace anything shaped like a key (a client may paste one into any field, and error
    messages quote fields) with ``rtk_***``."""
    return _KEY_ANYWHERE.sub("rtk_***", text)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SCHEMA = """CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL, collections TEXT NOT NULL,
    digest BLOB NOT NULL, created REAL NOT NULL, expires REAL, revoked REAL)"""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What ``keys list`` shows: everything about a key but its secret."""

    id: str
    name: str
    role: str
    collections: list[str]
    created: float
    expires: float | None
    revoked: float | None

    @property
    def status(self) -> str:
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= time.time():
            return "expired"
        return "active"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "role": self.role, "collections": self.collections,
                "created": _iso(self.created), "expires": _iso(self.expires), "revoked": _iso(self.revoked),
                "status": self.status}


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def parse_expiry(text: str | None, now: float | None = None) -> float | None:
    """``30d``, ``12h``, ``90m``, ``2w`` from now, or an ISO date/time (UTC when no zone is given).

    Raises:
        ConfigError: anything else, saying what is accepted.
    """
    if text is None:
        return None
    now = time.time() if now is None else now
    m = _DURATION.match(text.strip().lower())
    if m and int(m[1]) > 0:
        return now + int(m[1]) * _UNITS[m[2]]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        when = None
    if when is None:
        raise ConfigError(f"expires: {text!r} is not a duration or date (e.g. 30d, 12h, 90m, 2w, 2027-01-31)")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    if when.timestamp() <= now:
        raise ConfigError(f"expires: {text!r} is in the past")
    return when.timestamp()


def _private_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 holding ``data``; fails if it exists (never overwrites)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class KeyStore:
    """The keys of one data directory (``DATA_DIR/keys.db`` + ``DATA_DIR/server.secret``).

    Nothing is created until the first key is: a server with no keys leaves no files behind.
    """

    def __init__(self, data_dir: str | Path):
        self.dir = Path(data_dir)
        self.db_path = self.dir / "keys.db"
        self.secret_path = self.dir / "server.secret"
        self._conn: sqlite3.Connection | None = None
        self._secret: bytes | None = None
        self._lock = threading.Lock()
        # Compared against when the id is unknown, so that path does the same work as a real one.
        self._dummy = hmac.new(secrets.token_bytes(32), b"dummy", hashlib.sha256).digest()

    # -- storage ----------------------------------------------------------------------------
    def _db(self, create: bool = False) -> sqlite3.Connection | None:
        if self._conn is None:
            if not self.db_path.exists():
                if not create:
                    return None
                self.dir.mkdir(parents=True, exist_ok=True)
                try:  # private from the start: it names every key holder and their grants
                    _private_file(self.db_path, b"")
                except FileExistsError:
                    pass
            conn = sqlite3.connect(self.db_path, check_same_thread=False, timeout=10)
            conn.execute(_SCHEMA)
            conn.commit()
            self._conn = conn
        return self._conn

    def _server_secret(self, create: bool = False) -> bytes | None:
        if self._secret is None:
            if not self.secret_path.exists():
                if not create:
                    return None
                self.dir.mkdir(parents=True, exist_ok=True)
                try:
                    _private_file(self.secret_path, secrets.token_bytes(32).hex().encode())
                except FileExistsError:  # another process made it first: use theirs
                    pass
            mode = self.secret_path.stat().st_mode & 0o777
            if mode & 0o077:
                raise ConfigError(f"{self.secret_path}: readable by other users (mode {mode:o}); "
                                  f"run: chmod 600 {self.secret_path}")
            self._secret = bytes.fromhex(self.secret_path.read_text().strip())
        return self._secret

    def _digest(self, key: str, secret: bytes) -> bytes:
        return hmac.new(secret, key.encode(), hashlib.sha256).digest()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    # -- management -------------------------------------------------------------------------
    def create(self, name: str, role: str, collections: list[str], expires: float | None = None) -> tuple[KeyInfo, str]:
        """Create a key; returns its info and the key itself (shown once, never stored).

        Raises:
            ConfigError: a bad name, role or collection, no collection for a non-admin, or an
                active key of that name exists.
        """
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"name: {str(name)[:80]!r} is not a key name (1-64 letters, digits, '.', '@', '_' "
                              "or '-')")
        check_role(role)
        cols = sorted(set(check_names(collections, "collection")))
        if not cols:
            if role != "admin":
                raise ConfigError("collection: give at least one --collection for a reader or writer key "
                                  "(or --collection '*' for every collection)")
            cols = [ALL]
        secret = self._server_secret(create=True)
        key_id = secrets.token_hex(5)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        info = KeyInfo(key_id, name, role, cols, time.time(), expires, None)
        with self._lock:
            db = self._db(create=True)
            old = db.execute("SELECT revoked FROM keys WHERE name = ?", (name,)).fetchone()
            if old is not None and old[0] is None:
                raise ConfigError(f"name: a key named '{name}' exists; revoke it first "
                                  f"(python -m rag keys revoke {name}) or pick another name")
            with db:
                db.execute("DELETE FROM keys WHERE name = ?", (name,))  # a revoked key of that name
                db.execute("INSERT INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                           (key_id, name, role, json.dumps(cols), self._digest(key, secret), info.created, expires))
        return info, key

    def list(self) -> list[KeyInfo]:
        with self._lock:
            db = self._db()
            rows = db.execute("SELECT id, name, role, collections, created, expires, revoked FROM keys "
                              "ORDER BY name").fetchall() if db else []
        return [KeyInfo(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5], r[6]) for r in rows]

    def revoke(self, name: str) -> bool:
        """Revoke the active key called ``name``; False when there is none."""
        with self._lock:
            db = self._db()
            if db is None:
                return False
            with db:
                cur = db.execute("UPDATE keys SET revoked = ? WHERE name = ? AND revoked IS NULL",
                                 (time.time(), name))
            return cur.rowcount > 0

    def exists(self) -> bool:
        """True once any key was created (revoked ones count: revoking never opens the server)."""
        with self._lock:
            db = self._db()
            return bool(db and db.execute("SELECT 1 FROM keys LIMIT 1").fetchone())

    # -- verification -----------------------------------------------------------------------
    def verify(self, key: str | None) -> tuple[Principal | None, str]:
        """Check a presented key.

        Returns:
            ``(principal, "ok")``, or ``(None, why)`` with why one of ``missing``, ``invalid``,
            ``revoked``, ``expired``. ``revoked``/``expired`` are only said to a caller who
            holds the real key (its digest matched); every other failure is ``invalid``.
        """
        if not key:
            return None, "missing"
        m = _KEY.match(key)
        key_id = m[1] if m else "-"
        secret = self._server_secret()
        with self._lock:
            db = self._db()
            row = db.execute("SELECT digest, name, role, collections, expires, revoked FROM keys WHERE id = ?",
                             (key_id,)).fetchone() if db else None
        # the same HMAC and compare on every path, found or not
        digest = self._digest(key, secret or b"-")
        match = hmac.compare_digest(digest, row[0] if row else self._dummy)
        if not (match and row and secret):
            return None, "invalid"
        if row[5] is not None:
            return None, "revoked"
        if row[4] is not None and row[4] <= time.time():
            return None, "expired"
        return principal(row[1], row[2], json.loads(row[3])), "ok"
