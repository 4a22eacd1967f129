"""The manifest: what was ingested from which file, kept next to the index.

Crash safety comes from the order of writes: a file is marked ``pending`` (with its new hash)
before its old chunks are touched, and ``done`` only after its new chunks are stored. A run that
finds ``pending`` rows (a killed ingest) redoes those files from scratch: delete by source, then
upsert deterministic chunk ids; so there are never duplicates or orphans.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from rag.stores import local_path, scheme_of

_COLS = "path, source, size, mtime_ns, hash, fingerprint, chunks, status, reason"


@dataclass(slots=True)
class Entry:
    path: str        # absolute path of the file
    source: str      # name stored on its chunks
    size: int
    mtime_ns: int
    hash: str
    fingerprint: str  # chunker + embedder settings the chunks were made with
    chunks: int
    status: str      # 'pending' | 'done' | 'failed'
    reason: str = ""  # why it failed (kept so an unchanged broken file is not parsed again)


def manifest_path(store_uri: str, data_dir: Path) -> Path:
    """The embedded store keeps its manifest in its folder; others get one under the data dir."""
    if scheme_of(store_uri) == "file":
        return local_path(store_uri) / "manifest.sqlite"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", re.sub(r"//[^@/]*@", "//", store_uri))[:80]
    digest = hashlib.sha256(store_uri.encode()).hexdigest()[:10]
    return Path(data_dir) / "manifests" / f"{slug}-{digest}.sqlite"


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Manifest:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("""CREATE TABLE IF NOT EXISTS files (
            path TEXT PRIMARY KEY, source TEXT NOT NULL, size INTEGER, mtime_ns INTEGER, hash TEXT,
            fingerprint TEXT, chunks INTEGER, status TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '',
            updated REAL)""")

    def get(self, path: str) -> Entry | None:
        row = self.db.execute(f"SELECT {_COLS} FROM files WHERE path=?", (path,)).fetchone()
        return Entry(*row) if row else None

    def entries(self) -> list[Entry]:
        rows = self.db.execute(f"SELECT {_COLS} FROM files")
        return [Entry(*r) for r in rows]

    def put(self, e: Entry) -> None:
        self.db.execute(f"INSERT OR REPLACE INTO files ({_COLS}, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (e.path, e.source, e.size, e.mtime_ns, e.hash, e.fingerprint, e.chunks, e.status,
                         e.reason, time.time()))

    def remove(self, path: str) -> None:
        self.db.execute("DELETE FROM files WHERE path=?", (path,))

    def close(self) -> None:
        self.db.close()
