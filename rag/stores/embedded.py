"""The embedded default store: SQLite (source of truth) + a FAISS index (derived, rebuildable).

Why this shape (see bench/store_bench.py for the measurements):
- SQLite in WAL mode gives crash safety and atomic per-file replacement for free; chunks,
  vectors, metadata and the build info live in one file, so a kill -9 never leaves them apart.
- FAISS gives fast search: exact (flat) below ``ivf_threshold`` chunks, IVF above it. The index
  file is only a cache: it records the highest rowid it holds and the last deletion it applied,
  and on open (or when another process wrote) it catches up from SQLite instead of rebuilding.
  IVF trains in seconds even at 1M chunks, unlike HNSW's minutes-long build.
- Metadata filters (collections included) run in SQL (indexed collection/source/page) and become
  a FAISS ID selector, so FAISS only ever ranks allowed rows; very selective filters are answered
  exactly from the matching rows instead. Either way a filter never post-filters a top-k.
- Collections are a column; an index from before collections gets the column on open, its rows
  in ``default`` (an in-place ALTER: no rewrite, the FAISS cache stays valid).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import StoreError
from rag.stores import local_path, to_vectors
from rag.types import DEFAULT_COLLECTION, Chunk, Filter, Hit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    page INTEGER NOT NULL DEFAULT 0,
    chunk_index INTEGER NOT NULL DEFAULT 0,
    file_hash TEXT NOT NULL DEFAULT '',
    text TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    vec BLOB NOT NULL,
    collection TEXT NOT NULL DEFAULT 'default'
);
CREATE INDEX IF NOT EXISTS chunks_source_page ON chunks (source, page);
CREATE TABLE IF NOT EXISTS deleted (seq INTEGER PRIMARY KEY AUTOINCREMENT, row INTEGER NOT NULL);
"""
# After the migration (an old table has no collection column to index yet).
_INDEXES = "CREATE INDEX IF NOT EXISTS chunks_collection_source ON chunks (collection, source, page);"

_COLS = "rowid, id, source, page, chunk_index, file_hash, text, metadata, collection"


def _row_to_chunk(row: tuple) -> Chunk:
    _, cid, source, page, idx, fhash, text, meta, collection = row
    return Chunk(cid, text, source, page, idx, fhash, json.loads(meta), collection)


def _migrate(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2: add the collection column (old rows: 'default'). Safe with concurrent openers."""
    if "collection" in {r[1] for r in db.execute("PRAGMA table_info(chunks)")}:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if "collection" not in {r[1] for r in db.execute("PRAGMA table_info(chunks)")}:
            db.execute(f"ALTER TABLE chunks ADD COLUMN collection TEXT NOT NULL DEFAULT '{DEFAULT_COLLECTION}'")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


class EmbeddedStore:
    """Zero-setup on-disk store in a folder (``PATH`` or ``file://PATH``)."""

    def __init__(self, uri: str, *, ivf_threshold: int = 50_000, nprobe: int = 48, **_: Any):
        self.path = local_path(uri)
        self.uri = str(self.path)
        self.ivf_threshold = ivf_threshold
        self.nprobe = nprobe
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path / "chunks.sqlite", isolation_level=None,
                                      check_same_thread=False, timeout=30)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            _migrate(self.db)
            self.db.executescript(_INDEXES)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open the embedded store at {self.path}: {e}. "
                             "Check that the folder is writable, or pick another with --store") from e
        self._lock = threading.RLock()
        self._index = None          # faiss index with rowids as ids
        self._max_row = 0           # highest rowid the index holds
        self._del_seq = 0           # last deletion applied to the index
        self._index_kind = ""
        self._trained_for = 0
        self._dirty = False         # index differs from its saved file

    # -- info ---------------------------------------------------------------------------------
    def get_info(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT value FROM meta WHERE key='info'").fetchone()
        return json.loads(row[0]) if row else None

    def set_info(self, info: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES ('info', ?)", (json.dumps(info),))

    # -- writes -------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if not chunks:
            return
        vecs = to_vectors(vectors, len(chunks))
        latest = {c.id: i for i, c in enumerate(chunks)}
        if len(latest) < len(chunks):  # the same id twice in one batch: the last one wins
            keep = sorted(latest.values())
            chunks, vecs = [chunks[i] for i in keep], vecs[keep]
        with self._lock:
            cur = self.db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                ids = [c.id for c in chunks]
                old = []
                for i in range(0, len(ids), 500):
                    part = ids[i:i + 500]
                    old += [r[0] for r in cur.execute(
                        f"SELECT rowid FROM chunks WHERE id IN ({','.join('?' * len(part))})", part)]
                if old:
                    cur.executemany("DELETE FROM chunks WHERE rowid=?", [(r,) for r in old])
                    cur.executemany("INSERT INTO deleted (row) VALUES (?)", [(r,) for r in old])
                cur.executemany(
                    "INSERT INTO chunks (id, source, page, chunk_index, file_hash, text, metadata, vec, collection) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(c.id, c.source, int(c.page), int(c.chunk_index), c.file_hash, c.text,
                      json.dumps(c.metadata, ensure_ascii=False), v.tobytes(), c.collection)
                     for c, v in zip(chunks, vecs)])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def delete_source(self, source: str, collection: str = DEFAULT_COLLECTION) -> int:
        with self._lock:
            cur = self.db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                rows = [r[0] for r in cur.execute("SELECT rowid FROM chunks WHERE collection=? AND source=?",
                                                  (collection, source))]
                cur.execute("DELETE FROM chunks WHERE collection=? AND source=?", (collection, source))
                cur.executemany("INSERT INTO deleted (row) VALUES (?)", [(r,) for r in rows])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return len(rows)

    # -- reads --------------------------------------------------------------------------------
    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]

    def version(self) -> tuple[int, int]:
        """Changes whenever chunks are added or deleted (cheap: two indexed lookups)."""
        row = self.db.execute("SELECT (SELECT COALESCE(MAX(rowid), 0) FROM chunks), "
                              "(SELECT COALESCE(MAX(seq), 0) FROM deleted)").fetchone()
        return int(row[0]), int(row[1])

    def sources(self, collections: list[str] | None = None) -> dict[str, int]:
        if collections is None:
            return dict(self.db.execute("SELECT source, COUNT(*) FROM chunks GROUP BY source"))
        return dict(self.db.execute(f"SELECT source, COUNT(*) FROM chunks WHERE collection IN "
                                    f"({','.join('?' * len(collections))}) GROUP BY source", list(collections)))

    def collections(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT collection, COUNT(*) FROM chunks GROUP BY collection"))

    def iter_chunks(self, batch_size: int = 1000) -> Iterator[tuple[list[Chunk], np.ndarray]]:
        last = 0
        while True:
            rows = self.db.execute(f"SELECT {_COLS}, vec FROM chunks WHERE rowid > ? ORDER BY rowid LIMIT ?",
                                   (last, batch_size)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            yield ([_row_to_chunk(r[:-1]) for r in rows],
                   np.vstack([np.frombuffer(r[-1], dtype=np.float32) for r in rows]))

    def texts(self, with_collections: bool = False) -> tuple[list[str], ...]:
        """(ids, texts[, collections]) of every chunk, cheaply and in one read: what BM25 indexes."""
        rows = self.db.execute("SELECT id, text, collection FROM chunks ORDER BY rowid").fetchall()
        out = [r[0] for r in rows], [r[1] for r in rows]
        return (*out, [r[2] for r in rows]) if with_collections else out

    def get(self, ids: Sequence[str]) -> list[Chunk]:
        out: dict[str, Chunk] = {}
        for i in range(0, len(ids), 500):
            part = list(ids[i:i + 500])
            for row in self.db.execute(f"SELECT {_COLS} FROM chunks WHERE id IN ({','.join('?' * len(part))})",
                                       part):
                out[row[1]] = _row_to_chunk(row)
        return [out[i] for i in ids if i in out]

    def search(self, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        import faiss

        q = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        with self._lock:
            self._sync()
            # One query is too small to split across threads: OpenMP's spin-waiting only adds
            # latency (measured 20-50 ms instead of <1 ms at 10k chunks on a busy 2-core machine).
            faiss.omp_set_num_threads(1)
            if self._index is None or self._index.ntotal == 0:
                return []
            allowed = self._allowed_rows(filter)
            if allowed is not None and (len(allowed) == 0):
                return []
            if allowed is not None and len(allowed) <= max(4 * k, 20_000):
                scored = self._exact(q[0], allowed, k)
            else:
                scored = self._faiss(q, k, allowed)
        return self._hits(scored)

    # -- internals ----------------------------------------------------------------------------
    def _allowed_rows(self, f: Filter | None) -> np.ndarray | None:
        if f is None or f.is_empty():
            return None
        where, args = [], []
        if f.collections is not None:
            where.append(f"collection IN ({','.join('?' * len(f.collections))})")
            args += f.collections
        if f.sources is not None:
            where.append(f"source IN ({','.join('?' * len(f.sources))})")
            args += f.sources
        if f.page_min is not None:
            where.append("page >= ?")
            args.append(f.page_min)
        if f.page_max is not None:
            where.append("page <= ?")
            args.append(f.page_max)
        rows = self.db.execute(f"SELECT rowid FROM chunks WHERE {' AND '.join(where)}", args).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def _exact(self, q: np.ndarray, rows: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Exact scores over the rows a filter allows, with vectors read back from the index."""
        try:
            vecs = self._index.reconstruct_batch(rows)
            got = rows.tolist()
        except RuntimeError:  # an index without a direct map: read the vectors from SQLite
            vecs_l, got = [], []
            for i in range(0, len(rows), 900):
                part = rows[i:i + 900].tolist()
                for rid, blob in self.db.execute(
                        f"SELECT rowid, vec FROM chunks WHERE rowid IN ({','.join('?' * len(part))})", part):
                    got.append(rid)
                    vecs_l.append(np.frombuffer(blob, dtype=np.float32))
            if not got:
                return []
            vecs = np.vstack(vecs_l)
        scores = vecs @ q
        top = np.argsort(-scores)[:k]
        return [(got[i], float(scores[i])) for i in top]

    def _faiss(self, q: np.ndarray, k: int, allowed: np.ndarray | None) -> list[tuple[int, float]]:
        import faiss

        params = None
        nprobe = self.nprobe
        for _ in range(4):
            sel = faiss.IDSelectorBatch(allowed) if allowed is not None else None
            if self._index_kind == "ivf":
                params = faiss.SearchParametersIVF(sel=sel, nprobe=min(nprobe, self._index.nlist))
            elif sel is not None:
                params = faiss.SearchParameters(sel=sel)
            scores, ids = self._index.search(q, k, params=params)
            out = [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
            # A filter can leave the probed IVF lists short of k rows: probe more.
            if len(out) >= k or self._index_kind != "ivf" or allowed is None:
                return out
            nprobe *= 4
        return out

    def _hits(self, scored: list[tuple[int, float]]) -> list[Hit]:
        if not scored:
            return []
        rows = {r[0]: r for r in self.db.execute(
            f"SELECT {_COLS} FROM chunks WHERE rowid IN ({','.join('?' * len(scored))})", [s[0] for s in scored])}
        return [Hit.from_chunk(_row_to_chunk(rows[rid]), score) for rid, score in scored if rid in rows]

    # -- the FAISS cache ----------------------------------------------------------------------
    def _sync(self) -> None:
        """Bring the in-memory index up to date with SQLite (incrementally where possible)."""
        max_row = self.db.execute("SELECT COALESCE(MAX(rowid), 0) FROM chunks").fetchone()[0]
        min_seq, del_seq = self.db.execute("SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM deleted"
                                           ).fetchone()
        if self._index is None:
            self._load_file()
        if self._index is not None and max_row == self._max_row and del_seq == self._del_seq:
            return
        n = self.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0]
        want_ivf = n >= self.ivf_threshold
        retrain = (self._index is None or (want_ivf and self._index_kind != "ivf")
                   or (self._index_kind == "ivf" and n > 4 * self._trained_for)
                   or (not want_ivf and self._index_kind == "ivf" and n < self.ivf_threshold // 4)
                   # the deletion log was trimmed past what this index applied, or went backwards
                   or (self._del_seq < del_seq and self._del_seq < min_seq - 1)
                   or self._del_seq > del_seq or self._max_row > max_row)
        if retrain:
            self._build(n, want_ivf)
        else:
            removed = [r[0] for r in self.db.execute("SELECT row FROM deleted WHERE seq > ?", (self._del_seq,))]
            if removed:
                self._index.remove_ids(np.asarray(removed, dtype=np.int64))
            self._add_rows_after(self._max_row)
        self._max_row, self._del_seq = max_row, del_seq
        self._dirty = True

    def _add_rows_after(self, after: int) -> None:
        last = after
        while True:
            rows = self.db.execute("SELECT rowid, vec FROM chunks WHERE rowid > ? ORDER BY rowid LIMIT 20000",
                                   (last,)).fetchall()
            if not rows:
                return
            last = rows[-1][0]
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.vstack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            if self._index is None:
                self._new_flat(vecs.shape[1])
            self._index.add_with_ids(vecs, ids)

    def _new_flat(self, dim: int) -> None:
        import faiss

        self._index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._index_kind = "flat"
        self._trained_for = 0

    def _build(self, n: int, ivf: bool) -> None:
        import faiss

        faiss.omp_set_num_threads(max(1, os.cpu_count() or 1))  # k-means and adds do parallelise

        self._index = None
        self._index_kind = ""
        if n == 0:
            return
        dim = len(self.db.execute("SELECT vec FROM chunks LIMIT 1").fetchone()[0]) // 4
        if not ivf:
            self._new_flat(dim)
        else:
            # ~2*sqrt(n) lists trained on 30 points each: k-means cost grows with lists x sample,
            # and at 1M chunks this keeps the build well under a minute on 2 cores while
            # nprobe=48 still scans only ~2.4% of the vectors (recall@10 >= 0.95, bench/store_bench.py).
            nlist = int(min(8192, max(256, 2 * np.sqrt(n))))
            sample_n = min(n, nlist * 30)
            step = max(1, n // sample_n)
            rows = self.db.execute("SELECT vec FROM chunks WHERE rowid % ? = 0 LIMIT ?", (step, sample_n)).fetchall()
            sample = np.vstack([np.frombuffer(r[0], dtype=np.float32) for r in rows])
            quant = faiss.IndexFlatIP(dim)
            index = faiss.IndexIVFFlat(quant, dim, min(nlist, len(sample)), faiss.METRIC_INNER_PRODUCT)
            index.cp.niter = 10
            index.train(sample)
            index.set_direct_map_type(faiss.DirectMap.Hashtable)  # so remove_ids works by id
            self._index = index
            self._index_kind = "ivf"
            self._trained_for = n
        self._add_rows_after(0)

    def _index_file(self) -> Path:
        return self.path / "vectors.faiss"

    def _load_file(self) -> None:
        import faiss

        path = self._index_file()
        if not path.exists():
            return
        try:
            raw = path.read_bytes()
            head = int.from_bytes(raw[:8], "little")
            st = json.loads(raw[8:8 + head])
            index = faiss.deserialize_index(np.frombuffer(raw[8 + head:], dtype=np.uint8))
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt from SQLite
            return
        self._index, self._max_row, self._del_seq = index, st["max_row"], st["del_seq"]
        self._index_kind, self._trained_for = st["kind"], st.get("trained_for", 0)

    def flush(self) -> None:
        """Save the index cache so the next open does not rebuild it.

        State and index go in one file, replaced atomically, so they can never disagree.
        """
        import faiss

        with self._lock:
            self._sync()
            if self._index is None or not self._dirty:
                return
            path = self._index_file()
            head = json.dumps({"max_row": self._max_row, "del_seq": self._del_seq,
                               "kind": self._index_kind, "trained_for": self._trained_for}).encode()
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as fh:
                fh.write(len(head).to_bytes(8, "little"))
                fh.write(head)
                fh.write(faiss.serialize_index(self._index).tobytes())
            os.replace(tmp, path)
            # Deletions up to here are in the saved index; keep the newest log row so the
            # sequence never appears to go backwards.
            self.db.execute("DELETE FROM deleted WHERE seq < ?", (self._del_seq,))
            self._dirty = False

    def close(self) -> None:
        try:
            if self._dirty or self._index is None:
                self.flush()
        finally:
            self.db.close()
