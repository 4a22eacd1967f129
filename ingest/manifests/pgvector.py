"""The manifest of a pgvector store, in the store: table ``<chunks table>_manifest``.

Same rows as ``ingest/manifest.py`` (keyed by collection and path) plus a lease: ``owner`` (host,
pid and a random token of the ingest that works on the file) and ``lease_until``. A run claims a
file (``claim``) before parsing it; the claim fails while another live run holds it. Leases are
renewed by a background thread every ``LEASE_S / 3`` seconds; a run that dies stops renewing, so
its claims expire and the next run redoes those files (on the same host a dead pid frees them at
once). ``done`` and ``failed`` rows hold no lease.
"""

from __future__ import annotations

import contextlib
import threading
import time

from ingest.manifest import Entry
from ingest.manifests.leases import LeaseHolder, alive
from rag.errors import StoreError, redact
from rag.types import DEFAULT_COLLECTION

LEASE_S = 60.0
_COLS = ("path", "source", "size", "mtime_ns", "hash", "fingerprint", "chunks", "status", "reason", "collection")


class PgManifest(LeaseHolder):
    def __init__(self, store_uri: str):
        import psycopg
        from psycopg import sql

        from rag.stores.pgvector import parse_uri

        cfg = parse_uri(store_uri)
        self.uri = redact(store_uri)
        self._conninfo = cfg["conn"]
        self._sql = sql
        self._t = sql.Identifier(f"{cfg['table']}_manifest")
        self._init_leases()
        try:
            self.db = psycopg.connect(**self._conninfo, autocommit=True)
        except psycopg.OperationalError as e:
            raise StoreError(f"cannot open the manifest in {redact(store_uri)}: {e}") from e
        # Two machines starting at once would race in CREATE TABLE IF NOT EXISTS (a unique-violation
        # on the catalog): serialise it on an advisory lock named after the table.
        with self.db.transaction():
            self.db.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"{cfg['table']}_manifest",))
            self.db.execute(sql.SQL("""CREATE TABLE IF NOT EXISTS {} (
            collection text NOT NULL, path text NOT NULL, source text NOT NULL, size bigint, mtime_ns bigint,
            hash text, fingerprint text, chunks integer, status text NOT NULL, reason text NOT NULL DEFAULT '',
            owner text, lease_until double precision, updated double precision,
            PRIMARY KEY (collection, path))""").format(self._t))
        self._lock = threading.Lock()

    # -- the Manifest interface ---------------------------------------------------------------
    def get(self, path: str, collection: str = DEFAULT_COLLECTION) -> Entry | None:
        row = self._q("SELECT {cols} FROM {t} WHERE collection=%s AND path=%s", (collection, path)).fetchone()
        return Entry(*row) if row else None

    def entries(self, collection: str | None = DEFAULT_COLLECTION) -> list[Entry]:
        if collection is None:
            return [Entry(*r) for r in self._q("SELECT {cols} FROM {t}")]
        return [Entry(*r) for r in self._q("SELECT {cols} FROM {t} WHERE collection=%s", (collection,))]

    def put(self, e: Entry) -> None:
        """Write a row; ``pending`` rows carry this run's lease, ``done``/``failed`` rows none."""
        mine = e.status == "pending"
        self._q("INSERT INTO {t} ({cols}, owner, lease_until, updated) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s, %s, %s, %s) ON CONFLICT (collection, path) DO UPDATE SET {sets}, owner=EXCLUDED.owner, "
                "lease_until=EXCLUDED.lease_until, updated=EXCLUDED.updated",
                (*self._values(e), self.owner if mine else None, time.time() + LEASE_S if mine else None,
                 time.time()))

    def remove(self, path: str, collection: str = DEFAULT_COLLECTION) -> None:
        self._q("DELETE FROM {t} WHERE collection=%s AND path=%s", (collection, path))

    def close(self) -> None:
        self.end_leases()
        import psycopg

        try:
            self.release()
        except (StoreError, psycopg.Error):
            pass  # the server (or the table) is gone: leases expire on their own
        finally:
            self.db.close()

    # -- sharing ----------------------------------------------------------------------------
    def claim(self, e: Entry) -> tuple[str, Entry | None]:
        """Take the lease on ``e``'s file (written as ``pending`` with ``e``'s hash).

        Returns:
            ("ok", None) when this run now owns the file; ("done", row) when another run already
            stored these bytes with this fingerprint; ("busy", row) while another live run holds it.
        """
        now = time.time()
        mine = (*self._values(Entry(*[getattr(e, c) for c in _COLS[:7]], "pending", "", e.collection)),
                self.owner, now + LEASE_S, now)
        with self._lock, self._wrap(), self.db.transaction():
            # A new file: the first INSERT wins; a concurrent one waits for it, then does nothing
            # (SELECT ... FOR UPDATE alone cannot lock a row that does not exist yet).
            fresh = self.db.execute(self._s(
                "INSERT INTO {t} ({cols}, owner, lease_until, updated) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
                "%s, %s, %s, %s) ON CONFLICT (collection, path) DO NOTHING RETURNING 1"), mine).fetchone()
            if fresh is None:
                row = self.db.execute(self._s("SELECT {cols}, owner, lease_until FROM {t} WHERE collection=%s "
                                              "AND path=%s FOR UPDATE"), (e.collection, e.path)).fetchone()
                old, owner, until = Entry(*row[:10]), row[10], row[11]
                if old.status == "done" and (old.hash, old.fingerprint) == (e.hash, e.fingerprint):
                    return "done", old
                if old.status == "pending" and owner not in (None, self.owner) and (until or 0) > now \
                        and alive(owner):
                    return "busy", old
                self.db.execute(self._s(
                    "UPDATE {t} SET source=%s, size=%s, mtime_ns=%s, hash=%s, fingerprint=%s, chunks=%s, "
                    "status=%s, reason=%s, owner=%s, lease_until=%s, updated=%s WHERE collection=%s AND path=%s"),
                    (*mine[1:9], *mine[10:], e.collection, e.path))
        self._start_renewer()
        return "ok", None

    def release(self) -> None:
        """Give up this run's leases (its pending rows stay pending: the next run redoes them)."""
        self._q("UPDATE {t} SET owner=NULL, lease_until=NULL WHERE owner=%s", (self.owner,))

    def _start_renewer(self) -> None:
        if self._renewer is not None:
            return

        def renew() -> None:
            import psycopg

            try:
                conn = psycopg.connect(**self._conninfo, autocommit=True)
            except psycopg.OperationalError:
                return  # the leases then expire: the files are redone by a later run, never lost
            with conn:
                while not self._stop.wait(LEASE_S / 3):
                    try:
                        conn.execute(self._s("UPDATE {t} SET lease_until=%s WHERE owner=%s AND status='pending'"),
                                     (time.time() + LEASE_S, self.owner))
                    except psycopg.Error:
                        return

        self._renewer = threading.Thread(target=renew, name="ragtune-lease", daemon=True)
        self._renewer.start()

    # -- helpers ----------------------------------------------------------------------------
    def _s(self, text: str):
        sql = self._sql
        return sql.SQL(text).format(t=self._t, cols=sql.SQL(", ").join(map(sql.Identifier, _COLS)),
                                    sets=sql.SQL(", ").join(sql.SQL("{c}=EXCLUDED.{c}").format(c=sql.Identifier(c))
                                                            for c in _COLS[1:9]))

    def _q(self, text: str, params: tuple = ()):
        import psycopg

        with self._lock:
            try:
                return self.db.execute(self._s(text), params)
            except psycopg.OperationalError as e:
                raise StoreError(f"{self.uri}: the ingest manifest could not be written: {e}. "
                                 "Next: check the server (scripts/pg.sh start), then run the same command again "
                                 "to complete") from e

    @contextlib.contextmanager
    def _wrap(self):
        import psycopg

        try:
            yield
        except psycopg.OperationalError as e:
            raise StoreError(f"{self.uri}: the ingest manifest could not be read: {e}. Next: check the server "
                             "(scripts/pg.sh start), then run the same command again to complete") from e

    @staticmethod
    def _values(e: Entry) -> tuple:
        return tuple(getattr(e, c) for c in _COLS)
