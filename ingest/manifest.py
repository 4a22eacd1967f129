"""The manifest: what was ingested from which file, kept next to the index.

Crash safety comes from the order of writes: a file is marked ``pending`` (with its new hash)
before its old chunks are touched, and ``done`` only after its new chunks are stored. A run that
finds ``pending`` rows (a killed ingest) redoes those files from scratch: delete by source, then
upsert deterministic chunk ids; so there are never duplicates or orphans.

Rows are keyed by (collection, path): the same file may be ingested into two collections and
removed from one without touching the other. A manifest from before collections is migrated on
open (its rows belong to the ``default`` collection).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from rag.stores import local_path, scheme_of
from rag.types import DEFAULT_COLLECTION

_COLS = "path, source, size, mtime_ns, hash, fingerprint, chunks, status, reason, collection"
_TABLE = """CREATE TABLE IF NOT EXISTS {name} (
    collection TEXT NOT NULL DEFAULT 'default', path TEXT NOT NULL, source TEXT NOT NULL, size INTEGER,
    mtime_ns INTEGER, hash TEXT, fingerprint TEXT, chunks INTEGER, status TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', updated REAL, PRIMARY KEY (collection, path))"""


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
    collection: str = DEFAULT_COLLECTION


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
        self.db.execute(_TABLE.format(name="files"))
        self._migrate()

    def _migrate(self) -> None:
        """A manifest keyed by path alone (before collections) becomes one keyed by (collection, path)."""
        if "collection" in {r[1] for r in self.db.execute("PRAGMA table_info(files)")}:
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            if "collection" not in {r[1] for r in self.db.execute("PRAGMA table_info(files)")}:
                self.db.execute("DROP TABLE IF EXISTS files_v2")
                self.db.execute(_TABLE.format(name="files_v2"))
                old = "path, source, size, mtime_ns, hash, fingerprint, chunks, status, reason, updated"
                self.db.execute(f"INSERT INTO files_v2 (collection, {old}) SELECT ?, {old} FROM files",
                                (DEFAULT_COLLECTION,))
                self.db.execute("DROP TABLE files")
                self.db.execute("ALTER TABLE files_v2 RENAME TO files")
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def get(self, path: str, collection: str = DEFAULT_COLLECTION) -> Entry | None:
        row = self.db.execute(f"SELECT {_COLS} FROM files WHERE collection=? AND path=?",
                              (collection, path)).fetchone()
        return Entry(*row) if row else None

    def entries(self, collection: str | None = DEFAULT_COLLECTION) -> list[Entry]:
        """The rows of one collection (None = every collection)."""
        if collection is None:
            return [Entry(*r) for r in self.db.execute(f"SELECT {_COLS} FROM files")]
        return [Entry(*r) for r in self.db.execute(f"SELECT {_COLS} FROM files WHERE collection=?", (collection,))]

    def put(self, e: Entry) -> None:
        self.db.execute(f"INSERT OR REPLACE INTO files ({_COLS}, updated) VALUES "
                        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (e.path, e.source, e.size, e.mtime_ns, e.hash, e.fingerprint, e.chunks, e.status,
                         e.reason, e.collection, time.time()))

    def remove(self, path: str, collection: str = DEFAULT_COLLECTION) -> None:
        self.db.execute("DELETE FROM files WHERE collection=? AND path=?", (collection, path))

    def close(self) -> None:
        self.db.close()
