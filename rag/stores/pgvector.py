"""PostgreSQL + pgvector store: ``pgvector://user[:password]@host:port/db?table=chunks``.

Why this shape:
- One row per chunk in ``<table>`` (id primary key, source/page indexed, ``vector(dim)``), the
  build info in ``<table>_meta``: everything lives in the database, nothing on local disk.
- Writes COPY (binary) into a temporary table, then ``INSERT ... ON CONFLICT (id) DO UPDATE``,
  all in one transaction: bulk speed, idempotent by chunk id, never half-applied.
- The HNSW index (cosine) is built lazily, on the first search or on close, so a bulk load into
  an empty table does not pay per-row index maintenance; later upserts keep it up to date.
- Filtered queries use ``hnsw.iterative_scan = relaxed_order`` so they still return k rows;
  relaxed order means rows can arrive slightly out of order, so hits are re-sorted by score.
- Collections are an indexed ``collection`` column in the same WHERE clause as the other filters
  (the HNSW scan keeps going until k matching rows are found, or the planner uses the btree on
  (collection, source, page) for a small collection); never a filter applied after a top-k. A
  table from before collections gets the column on open (``ADD COLUMN ... DEFAULT 'default'``, a
  catalogue-only change in PostgreSQL >= 11, no rewrite), so its rows are ``default``.
- Every connection has ``connect_timeout`` and ``statement_timeout``: it never hangs.

URI query parameters: ``table`` (default ``chunks``), ``ef_search`` (default 100, raised to k
when k is larger), ``connect_timeout`` (seconds, default 5), ``statement_timeout`` (ms, default
60000), ``sslmode``, ``m`` / ``ef_construction`` (HNSW build). The password may also come from
``PGPASSWORD`` or ``~/.pgpass`` (libpq reads them).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.types.json import Jsonb

from rag.errors import ConfigError, IndexMismatchError, StoreError, redact
from rag.stores import to_vectors
from rag.types import DEFAULT_COLLECTION, Chunk, Filter, Hit

_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,50}$")
_COLS = ("id", "source", "page", "chunk_index", "file_hash", "text", "metadata", "embedding", "collection")
_CHECK = ("check that PostgreSQL is running and reachable (scripts/pg.sh start runs a local one), "
          "and the user, password (PGPASSWORD) and database name")


def _msg(e: Exception) -> str:
    """A driver error on one line, passwords stripped."""
    return redact(" ".join(str(e).split()))


def filter_to_sql(f: Filter | None) -> tuple[str, list[Any]]:
    """Translate a Filter into a WHERE clause (``%s`` placeholders) and its parameters.

    Returns ``("", [])`` for no filter. Column names are fixed, values always parameters.
    """
    if f is None or f.is_empty():
        return "", []
    where, params = [], []
    if f.collections is not None:
        where.append("collection = ANY(%s)")
        params.append(list(f.collections))
    srcs = f.sources
    if srcs is not None:
        if len(srcs) == 1:
            where.append("source = %s")
            params.append(srcs[0])
        else:
            where.append("source = ANY(%s)")
            params.append(list(srcs))
    if f.page_min is not None:
        where.append("page >= %s")
        params.append(int(f.page_min))
    if f.page_max is not None:
        where.append("page <= %s")
        params.append(int(f.page_max))
    return " AND ".join(where), params


def parse_uri(uri: str) -> dict[str, Any]:
    """Split a ``pgvector://`` URI into libpq keywords plus the store's own options."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "pgvector":
        raise ConfigError(f"not a pgvector URI: '{redact(uri)}' (expected pgvector://user@host:port/db)")
    q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    table = q.pop("table", "chunks")
    if not _TABLE_NAME.match(table):
        raise ConfigError(f"invalid table name '{table}' in '{redact(uri)}': use letters, digits and _")
    conn: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
        "dbname": unquote(parts.path.lstrip("/")) or "postgres",
        "connect_timeout": int(q.pop("connect_timeout", 5)),
    }
    if parts.username:
        conn["user"] = unquote(parts.username)
    if parts.password:
        conn["password"] = unquote(parts.password)
    if "sslmode" in q:
        conn["sslmode"] = q.pop("sslmode")
    opts = {"table": table, "ef_search": int(q.pop("ef_search", 100)),
            "statement_timeout": int(q.pop("statement_timeout", 60_000)),
            "m": int(q.pop("m", 16)), "ef_construction": int(q.pop("ef_construction", 64))}
    if q:
        raise ConfigError(f"unknown parameter(s) {sorted(q)} in '{redact(uri)}' (known: table, ef_search, "
                          "connect_timeout, statement_timeout, sslmode, m, ef_construction)")
    return {"conn": conn, **opts}


def _display_uri(conn: dict[str, Any], table: str) -> str:
    user = f"{conn['user']}@" if conn.get("user") else ""
    return f"pgvector://{user}{conn['host']}:{conn['port']}/{conn['dbname']}?table={table}"


class PgVectorStore:
    """Chunks and vectors in a PostgreSQL table with an HNSW (cosine) index."""

    def __init__(self, uri: str, **_: Any):
        cfg = parse_uri(uri)
        self._conninfo: dict[str, Any] = cfg["conn"]
        self.table: str = cfg["table"]
        self.ef_search: int = cfg["ef_search"]
        self.statement_timeout: int = cfg["statement_timeout"]
        self._hnsw = (cfg["m"], cfg["ef_construction"])
        self.uri = _display_uri(self._conninfo, self.table)
        self._t = sql.Identifier(self.table)
        self._meta = sql.Identifier(f"{self.table}_meta")
        self._idx = sql.Identifier(f"{self.table}_embedding_hnsw")
        self._lock = threading.RLock()
        self._dim: int | None = None
        self._indexed = False
        self.conn = self._connect()

    # -- connection -----------------------------------------------------------------------------
    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(**self._conninfo, autocommit=True,
                                   options=f"-c statement_timeout={self.statement_timeout} "
                                           "-c lock_timeout=10000 -c idle_in_transaction_session_timeout=60000")
        except psycopg.OperationalError as e:
            raise StoreError(f"cannot connect to {redact(self.uri)}: {_msg(e)}. "
                             f"Next: {_CHECK}") from e
        try:
            with conn.transaction():
                if not conn.execute("SELECT 1 FROM pg_extension WHERE extname='vector'").fetchone():
                    self._ddl_lock(conn, "ragtune:extension")
                    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            register_vector(conn)
            if conn.execute("SELECT to_regclass(%s)", (f"{self.table}_meta",)).fetchone()[0] is None:
                with conn.transaction():
                    self._ddl_lock(conn)
                    conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value jsonb NOT NULL)")
                                 .format(self._meta))
            conn.execute("SET hnsw.iterative_scan = relaxed_order")
            conn.execute(sql.SQL("SET hnsw.ef_search = {}").format(sql.Literal(self.ef_search)))
        except psycopg.Error as e:
            conn.close()
            raise StoreError(f"{redact(self.uri)}: cannot set up pgvector: {_msg(e)}. Next: the "
                             "'vector' extension must be installed on the server and the user allowed to "
                             "CREATE EXTENSION vector (or ask an admin to run it once)") from e
        self._dim = self._table_dim(conn)
        if self._dim is not None:
            self._migrate(conn)
        return conn

    def _ddl_lock(self, conn: psycopg.Connection, key: str | None = None) -> None:
        """Serialise schema changes to this table across processes and machines (held to the end of
        the transaction). Two ingests starting at once would otherwise race inside CREATE ... IF NOT
        EXISTS and one would fail with a unique violation on PostgreSQL's catalog."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key or f"ragtune:{self.table}",))

    def _migrate(self, conn: psycopg.Connection) -> None:
        """Schema 1 -> 2: the collection column and its index (idempotent; old rows are 'default')."""
        has = conn.execute("SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = 'collection' "
                           "AND NOT attisdropped", (self.table,)).fetchone()
        # Checked first: CREATE INDEX IF NOT EXISTS still takes a lock that waits for running writes.
        indexed = conn.execute("SELECT to_regclass(%s)", (f"{self.table}_collection_source",)).fetchone()[0]
        if has and indexed:
            return
        with conn.transaction():
            self._ddl_lock(conn)
            if not has:
                conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS collection text NOT NULL DEFAULT {}")
                             .format(self._t, sql.Literal(DEFAULT_COLLECTION)))
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (collection, source, page)")
                         .format(sql.Identifier(f"{self.table}_collection_source"), self._t))

    def _c(self) -> psycopg.Connection:
        """The connection, reopened once if the server dropped it."""
        if self.conn.closed or self.conn.broken:
            self.conn = self._connect()
            self._indexed = False
        return self.conn

    def _run(self, fn, *args):
        with self._lock:
            try:
                return fn(self._c(), *args)
            except psycopg.OperationalError as e:
                raise StoreError(f"{redact(self.uri)}: {_msg(e)}. Next: {_CHECK}") from e

    def _table_dim(self, conn: psycopg.Connection) -> int | None:
        row = conn.execute(
            "SELECT a.atttypmod FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) "
            "AND a.attname = 'embedding' AND NOT a.attisdropped", (self.table,)).fetchone()
        return int(row[0]) if row else None

    def _ensure_table(self, conn: psycopg.Connection, dim: int) -> None:
        if self._dim is not None:
            if self._dim != dim:
                raise IndexMismatchError(f"{self.uri} holds {self._dim}-d vectors, got {dim}-d: use the same "
                                         "embedder, or another table (?table=NAME)")
            return
        with conn.transaction():
            self._ddl_lock(conn)
            conn.execute(sql.SQL(
                "CREATE TABLE IF NOT EXISTS {t} (id text PRIMARY KEY, source text NOT NULL, "
                "page integer NOT NULL DEFAULT 0, chunk_index integer NOT NULL DEFAULT 0, "
                "file_hash text NOT NULL DEFAULT '', text text NOT NULL, "
                "metadata jsonb NOT NULL DEFAULT '{{}}', embedding vector({d}) NOT NULL, "
                "collection text NOT NULL DEFAULT {c})"
            ).format(t=self._t, d=sql.Literal(dim), c=sql.Literal(DEFAULT_COLLECTION)))
            conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (source, page)")
                         .format(sql.Identifier(f"{self.table}_source_page"), self._t))
        self._migrate(conn)
        self._dim = self._table_dim(conn)
        if self._dim != dim:
            raise IndexMismatchError(f"{self.uri} holds {self._dim}-d vectors, got {dim}-d")

    def build_index(self) -> None:
        """Create the HNSW index if missing (no statement timeout: it can take minutes at scale)."""
        self._run(self._build_index)

    def _build_index(self, conn: psycopg.Connection) -> None:
        if self._indexed or self._dim is None:
            return
        if conn.execute("SELECT to_regclass(%s)", (f"{self.table}_embedding_hnsw",)).fetchone()[0] is None:
            with conn.transaction():
                conn.execute("SET LOCAL statement_timeout = 0")
                conn.execute("SET LOCAL lock_timeout = 0")  # another machine may be building it: wait
                self._ddl_lock(conn)
                conn.execute("SET LOCAL maintenance_work_mem = '256MB'")
                try:
                    conn.execute(sql.SQL(
                        "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding vector_cosine_ops) "
                        "WITH (m = {}, ef_construction = {})").format(
                        self._idx, self._t, sql.Literal(self._hnsw[0]), sql.Literal(self._hnsw[1])))
                except psycopg.errors.UniqueViolation:  # another process built it at the same time
                    pass
        self._indexed = True

    # -- info -----------------------------------------------------------------------------------
    def get_info(self) -> dict[str, Any] | None:
        row = self._run(lambda c: c.execute(sql.SQL("SELECT value FROM {} WHERE key = 'info'")
                                            .format(self._meta)).fetchone())
        return row[0] if row else None

    def set_info(self, info: dict[str, Any]) -> None:
        def go(c):
            c.execute(sql.SQL("INSERT INTO {} (key, value) VALUES ('info', %s) "
                              "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value").format(self._meta),
                      (Jsonb(info),))
            if info.get("dim"):
                self._ensure_table(c, int(info["dim"]))
        self._run(go)

    # -- writes ---------------------------------------------------------------------------------
    def upsert(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        if not chunks:
            return
        vecs = to_vectors(vectors, len(chunks))
        latest = {c.id: i for i, c in enumerate(chunks)}  # last one wins, as with repeated upserts
        order = sorted(latest.values())
        self._run(self._upsert, [chunks[i] for i in order], vecs[order])

    def _upsert(self, conn: psycopg.Connection, chunks: list[Chunk], vecs: np.ndarray) -> None:
        self._ensure_table(conn, vecs.shape[1])
        cols = sql.SQL(", ").join(map(sql.Identifier, _COLS))
        update = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in _COLS[1:])
        with conn.transaction():
            conn.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS _ragtune_load (LIKE {} INCLUDING DEFAULTS) "
                                 "ON COMMIT DELETE ROWS").format(self._t))
            with conn.cursor() as cur:
                with cur.copy(sql.SQL("COPY _ragtune_load ({}) FROM STDIN WITH (FORMAT BINARY)").format(cols)) as cp:
                    cp.set_types(["text", "text", "int4", "int4", "text", "text", "jsonb", "vector", "text"])
                    for c, v in zip(chunks, vecs):
                        cp.write_row((c.id, c.source, int(c.page), int(c.chunk_index), c.file_hash or "",
                                      c.text, Jsonb(c.metadata or {}), v, c.collection))
            conn.execute(sql.SQL("INSERT INTO {t} ({cols}) SELECT {cols} FROM _ragtune_load "
                                 "ON CONFLICT (id) DO UPDATE SET {upd}").format(t=self._t, cols=cols, upd=update))

    def delete_source(self, source: str, collection: str = DEFAULT_COLLECTION) -> int:
        def go(c):
            if self._dim is None:
                return 0
            with c.transaction():
                return c.execute(sql.SQL("DELETE FROM {} WHERE collection = %s AND source = %s").format(self._t),
                                 (collection, source)).rowcount
        return self._run(go)

    # -- reads ----------------------------------------------------------------------------------
    def count(self) -> int:
        if self._dim is None:
            return 0
        return self._run(lambda c: c.execute(sql.SQL("SELECT count(*) FROM {}").format(self._t)).fetchone()[0])

    def sources(self, collections: list[str] | None = None) -> dict[str, int]:
        if self._dim is None:
            return {}
        where, params = filter_to_sql(Filter(collections=collections))
        return dict(self._run(lambda c: c.execute(
            sql.SQL("SELECT source, count(*) FROM {} {} GROUP BY source").format(
                self._t, sql.SQL("WHERE " + where) if where else sql.SQL("")), params).fetchall()))

    def collections(self) -> dict[str, int]:
        if self._dim is None:
            return {}
        return dict(self._run(lambda c: c.execute(
            sql.SQL("SELECT collection, count(*) FROM {} GROUP BY collection").format(self._t)).fetchall()))

    def search(self, vector: np.ndarray, k: int, filter: Filter | None = None) -> list[Hit]:
        if self._dim is None or k <= 0:
            return []
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        where, params = filter_to_sql(filter)

        def go(c):
            self._build_index(c)
            stmt = sql.SQL("SELECT id, text, source, page, chunk_index, metadata, 1 - (embedding <=> %s) AS score, "
                           "collection "
                           "FROM {t} {w} ORDER BY embedding <=> %s LIMIT %s").format(
                t=self._t, w=sql.SQL("WHERE " + where) if where else sql.SQL(""))
            with c.transaction():
                if k > self.ef_search:
                    c.execute(sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(min(k, 1000))))
                return c.execute(stmt, [q, *params, q, int(k)]).fetchall()

        rows = self._run(go)
        hits = [Hit(r[0], r[1], r[2], r[3], float(r[6]), r[4], dict(r[5] or {}), r[7]) for r in rows]
        hits.sort(key=lambda h: -h.score)  # relaxed_order may return rows slightly out of order
        return hits

    def iter_chunks(self, batch_size: int = 1000) -> Iterator[tuple[list[Chunk], np.ndarray]]:
        if self._dim is None:
            return
        last = ""
        stmt = sql.SQL("SELECT id, text, source, page, chunk_index, file_hash, metadata, embedding, collection FROM {} "
                       "WHERE id > %s ORDER BY id LIMIT %s").format(self._t)
        while True:
            rows = self._run(lambda c, after: c.cursor(binary=True).execute(stmt, (after, batch_size)).fetchall(),
                             last)
            if not rows:
                return
            last = rows[-1][0]
            yield ([Chunk(r[0], r[1], r[2], r[3], r[4], r[5], dict(r[6] or {}), r[8]) for r in rows],
                   np.vstack([r[7].to_numpy() for r in rows]).astype(np.float32, copy=False))

    def drop(self) -> None:
        """Delete the table and its info (tests, ``--reset``)."""
        def go(c):
            with c.transaction():
                c.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._t))
                c.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._meta))
            self._dim, self._indexed = None, False
        self._run(go)

    def close(self) -> None:
        if self.conn.closed:
            return
        try:
            if not self.conn.broken:
                self._run(self._build_index)
        except StoreError:
            pass
        finally:
            self.conn.close()

    def __repr__(self) -> str:
        return f"PgVectorStore({self.uri!r})"
