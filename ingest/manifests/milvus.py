"""The manifest of a Milvus store, in the store: collection ``<chunks collection>_manifest``.

Same rows as ``ingest/manifest.py`` (keyed by collection and path), plus leases, for
``milvus://host:port`` servers (and Milvus Lite, ``milvus://./file.db``, which one process at a time
can open: there the lease logic is exercised, not needed).

Milvus has no transactions, row locks or compare-and-set, so a lease cannot be "the row's owner
column, updated under a lock" as in ``pgvector.py``. What it has is linearisable single writes
and ``Strong`` reads: a query sees every insert/delete that returned before it started. The claim
is built on that alone, with three kinds of rows (a ``kind`` field; one dummy 2-d vector each,
since Milvus wants a vector field in every collection):

- ``entry``: the file's manifest row (id ``e:<sha of collection+path>``, written by upsert);
- ``claim``: "run R works on this file" (id: a random part, the file, R), inserted and deleted, never updated;
- ``owner``: run R's heartbeat, ``lease_until`` now + ``LEASE_S``, renewed every ``LEASE_S / 3`` by a
  background thread that inserts the next heartbeat before deleting the last one (so no reader
  ever finds none; nothing relies on upsert being atomic).

``claim``: skip if another live run has a claim on the file; otherwise insert my claim, then read
the file's claims again until I am alone: then the file is mine. While others are there, the oldest
claim (by its writer's clock, then its random id) stays and looks again, the others delete theirs
and leave the file ("busy"): so a claim made just after another run won the file gives way at once.
Two runs can never both own a file: if A and B both won, A's winning read did not see B's claim,
so B inserted it after that read, hence B's winning read (after B's insert) saw A's claim, which A
never deletes while it owns the file. Which claim goes first only decides who waits; correctness
rests on "alone after my insert" and ``Strong`` reads, not on clocks or an order of ids across machines
(auto ids are allocated in blocks per Milvus proxy, so "smallest auto id wins" would not be safe
on a cluster: a later claim through another proxy can get a smaller id). Claim ids start with a
random part, so claims made in the same instant go first in no fixed order of runs.

A claim is live while its owner's heartbeat is fresh and, on the same host, its pid exists (as in
pgvector.py): a run killed with SIGKILL frees its files at once on its host, after ``LEASE_S`` on
others; the next run redoes them. ``done`` and ``failed`` entries end the claim: the entry is written
first, then the claim deleted, and a winner reads the entry again after winning, so a run that
finds the claim gone also finds the ``done`` row and reports "stored by another run".
Clocks: ``lease_until`` is compared with the reader's clock, so machines need roughly synced clocks
(NTP; skew well under ``LEASE_S``).
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import secrets
import threading
import time
from pathlib import Path

from ingest.manifest import Entry
from ingest.manifests.leases import LeaseHolder, alive
from rag.errors import StoreError, redact
from rag.stores.milvus import _lit  # a Milvus string literal
from rag.types import DEFAULT_COLLECTION

LEASE_S = 60.0
FLUSH_EVERY = 256  # writes between flushes on Milvus Lite
LOOKS = 25  # how often the oldest claim looks again for the others to step back (~1 s in all)
_COLS = ("path", "source", "size", "mtime_ns", "hash", "fingerprint", "chunks", "status", "reason", "collection")
_TEXT = 65535
_ZERO = [0.0, 0.0]


def _key(collection: str, path: str) -> str:
    return hashlib.sha256(f"{collection}\0{path}".encode()).hexdigest()[:40]


class MilvusManifest(LeaseHolder):
    def __init__(self, store_uri: str):
        from pymilvus import MilvusClient

        from rag.stores.milvus import parse_uri

        cfg = parse_uri(store_uri)
        self.uri = cfg["display"]
        self.name = f"{cfg['collection']}_manifest"
        self.timeout = cfg["timeout"]
        self._init_leases()
        self._lock = threading.RLock()  # one client for the run and its heartbeat thread
        self._seq = itertools.count()
        self._held: dict[str, str] = {}  # key -> id of my live claim row
        self._beat: str | None = None
        self._writes = 0
        self._lite = False
        if cfg["local"]:
            Path(cfg["client_uri"]).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client = MilvusClient(uri=cfg["client_uri"], token=cfg.get("token") or os.environ.get(
                "MILVUS_TOKEN", ""), timeout=self.timeout)
            self._ensure()
            self._lite = "lite" in str(self.client.get_server_version()).lower()
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"cannot open the manifest in {redact(store_uri)}: {redact(str(e))}. Next: check that "
                             "the server is running (scripts/milvus.sh start) and MILVUS_TOKEN") from e

    def _ensure(self) -> None:
        if not self.client.has_collection(self.name):
            from pymilvus import DataType, MilvusClient

            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=1024)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs one; unused
            schema.add_field("kind", DataType.VARCHAR, max_length=8)  # entry | claim | owner
            schema.add_field("key", DataType.VARCHAR, max_length=64)
            schema.add_field("owner", DataType.VARCHAR, max_length=512)
            schema.add_field("lease_until", DataType.DOUBLE)
            schema.add_field("updated", DataType.DOUBLE)
            for name in ("path", "source", "reason"):
                schema.add_field(name, DataType.VARCHAR, max_length=_TEXT)
            for name in ("size", "mtime_ns", "chunks"):
                schema.add_field(name, DataType.INT64)
            schema.add_field("hash", DataType.VARCHAR, max_length=128)
            schema.add_field("fingerprint", DataType.VARCHAR, max_length=2048)
            schema.add_field("status", DataType.VARCHAR, max_length=16)
            schema.add_field("collection", DataType.VARCHAR, max_length=64)
            index = self.client.prepare_index_params()
            index.add_index(field_name="vector", index_type="AUTOINDEX", metric_type="L2")
            for name in ("kind", "key", "owner"):  # every claim looks rows up by these
                index.add_index(field_name=name, index_type="INVERTED")
            try:
                self.client.create_collection(self.name, schema=schema, index_params=index,
                                              consistency_level="Strong", timeout=self.timeout)
            except Exception:
                if not self.client.has_collection(self.name):  # not another run creating it at the same moment
                    raise
        self.client.load_collection(self.name, timeout=self.timeout)
        # Heartbeats of runs that ended without releasing (killed) are garbage once long expired.
        self.client.delete(self.name, filter=f'kind == "owner" and lease_until < {time.time() - 10 * LEASE_S}',
                           timeout=self.timeout)

    # -- the Manifest interface ---------------------------------------------------------------
    def get(self, path: str, collection: str = DEFAULT_COLLECTION) -> Entry | None:
        rows = self._do("read", self.client.get, self.name, ids=[f"e:{_key(collection, path)}"],
                        output_fields=list(_COLS), timeout=self.timeout)  # by primary key: no scan
        return self._entry(rows[0]) if rows else None

    def entries(self, collection: str | None = DEFAULT_COLLECTION) -> list[Entry]:
        expr = 'kind == "entry"' + ("" if collection is None else f" and collection == {_lit(collection)}")
        out = []
        with self._lock:
            it = self._do("read", self.client.query_iterator, self.name, batch_size=4000, filter=expr,
                          output_fields=list(_COLS), timeout=self.timeout)
            try:
                while batch := self._do("read", it.next):
                    out.extend(self._entry(r) for r in batch)
            finally:
                it.close()
        return out

    def put(self, e: Entry) -> None:
        """Write the file's row; a ``done``/``failed`` row ends this run's claim on it (row first)."""
        key = _key(e.collection, e.path)
        row = {"id": f"e:{key}", "vector": _ZERO, "kind": "entry", "key": key, "owner": "", "lease_until": 0.0,
               "updated": time.time(), **{c: getattr(e, c) for c in _COLS}}
        row["reason"] = (row["reason"] or "")[:8000]
        row["chunks"] = int(row["chunks"] or 0)
        self._do("written", self.client.upsert, self.name, [row], timeout=self.timeout)
        if e.status != "pending" and key in self._held:
            self._do("written", self.client.delete, self.name, ids=[self._held.pop(key)], timeout=self.timeout)

    def remove(self, path: str, collection: str = DEFAULT_COLLECTION) -> None:
        self._do("written", self.client.delete, self.name, ids=[f"e:{_key(collection, path)}"], timeout=self.timeout)

    def close(self) -> None:
        self.end_leases()
        try:
            self.release()
        except StoreError:
            pass  # the server is gone: the heartbeat expires on its own
        finally:
            self.client.close()

    # -- sharing ----------------------------------------------------------------------------
    def claim(self, e: Entry) -> tuple[str, Entry | None]:
        """Take the file of ``e`` for this run.

        Returns:
            ("ok", None) when this run now owns the file; ("done", row) when another run already
            stored these bytes with this fingerprint; ("busy", row) while another live run holds it
            or goes ahead of this one for it.
        """
        key = _key(e.collection, e.path)
        if key in self._held:
            return "ok", None
        row = self.get(e.path, e.collection)
        if self._stored(row, e):
            return "done", row
        if self._others(key):
            return "busy", row
        self._start_renewer()  # my heartbeat is visible before my claim is
        # Of claims that meet, the oldest goes ahead (so a late one yields to a run that already won);
        # the random part breaks ties, so no run always goes first.
        cid, made = f"c:{key}:{secrets.token_hex(8)}:{self.owner}", time.time()
        self._do("written", self.client.insert, self.name, [
            {"id": cid, "vector": _ZERO, "kind": "claim", "key": key, "owner": self.owner,
             "lease_until": 0.0, "updated": made, "path": e.path, "source": e.source, "reason": "",
             "size": 0, "mtime_ns": 0, "chunks": 0, "hash": e.hash, "fingerprint": e.fingerprint,
             "status": "claim", "collection": e.collection}], timeout=self.timeout)
        for look in range(LOOKS):
            others = self._others(key)
            if not others:
                row = self.get(e.path, e.collection)  # a run that finished it just before my claim
                if self._stored(row, e):
                    break
                self._held[key] = cid
                return "ok", None
            if min(others) < (made, cid):
                break  # a claim ahead of mine: its run keeps looking until alone, I leave the file to it
            time.sleep(random.uniform(0.001, 0.005) * (look + 1))  # the others step back: look again
        self._do("written", self.client.delete, self.name, ids=[cid], timeout=self.timeout)
        return ("done" if self._stored(row, e) else "busy"), row

    def release(self) -> None:
        """Give up this run's claims and heartbeat (its pending rows stay pending: the next run redoes them)."""
        self._held.clear()
        self._do("written", self.client.delete, self.name, filter=f"owner == {_lit(self.owner)}",
                 timeout=self.timeout)
        self._beat = None

    def _others(self, key: str) -> list[tuple[float, str]]:
        """(made, id) of other live runs' claims on ``key``; claims of dead runs are deleted on sight."""
        rows = self._do("read", self.client.query, self.name, filter=f'kind == "claim" and key == {_lit(key)}',
                        output_fields=["id", "owner", "updated"], consistency_level="Strong", timeout=self.timeout)
        rows = [r for r in rows if r["owner"] != self.owner]
        if not rows:
            return []
        owners = sorted({r["owner"] for r in rows})
        beats = self._do("read", self.client.query, self.name,
                         filter=f'kind == "owner" and owner in [{", ".join(map(_lit, owners))}]',
                         output_fields=["owner", "lease_until"], consistency_level="Strong", timeout=self.timeout)
        now, until = time.time(), {}
        for b in beats:
            until[b["owner"]] = max(until.get(b["owner"], 0.0), float(b["lease_until"]))
        live = {o for o in owners if until.get(o, 0.0) > now and alive(o)}
        dead = [r["id"] for r in rows if r["owner"] not in live]
        if dead:
            self._do("written", self.client.delete, self.name, ids=dead, timeout=self.timeout)
        return [(float(r["updated"]), r["id"]) for r in rows if r["owner"] in live]

    def _start_renewer(self) -> None:
        if self._beat is not None:
            return
        self._heartbeat()
        if self._renewer is not None and self._renewer.is_alive():
            return

        def renew() -> None:
            while not self._stop.wait(LEASE_S / 3):
                try:
                    self._heartbeat()
                except StoreError:
                    return  # the claims then expire: the files are redone by a later run, never lost

        self._renewer = threading.Thread(target=renew, name="ragtune-lease", daemon=True)
        self._renewer.start()

    def _heartbeat(self) -> None:
        """Insert the next heartbeat, then delete the last (never a moment with none)."""
        with self._lock:
            beat = f"o:{self.owner}:{next(self._seq)}"
            self._do("written", self.client.insert, self.name, [
                {"id": beat, "vector": _ZERO, "kind": "owner", "key": "", "owner": self.owner,
                 "lease_until": time.time() + LEASE_S, "updated": time.time(), "path": "", "source": "",
                 "reason": "", "size": 0, "mtime_ns": 0, "chunks": 0, "hash": "", "fingerprint": "", "status": "",
                 "collection": ""}], timeout=self.timeout)
            if self._beat is not None:
                self._do("written", self.client.delete, self.name, ids=[self._beat], timeout=self.timeout)
            self._beat = beat

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _stored(row: Entry | None, e: Entry) -> bool:
        return row is not None and row.status == "done" and (row.hash, row.fingerprint) == (e.hash, e.fingerprint)

    @staticmethod
    def _entry(r: dict) -> Entry:
        return Entry(*(r[c] for c in _COLS))

    def _do(self, what: str, fn, *args, **kw):
        with self._lock:
            try:
                out = fn(*args, **kw)
                if what == "written" and self._lite:
                    self._writes += 1
                    if self._writes % FLUSH_EVERY == 0:
                        # Milvus Lite scans unflushed rows in Python on every filtered read (a claim
                        # took 31 ms at 1000 files unflushed, 6 ms flushed); a server seals its own.
                        self.client.flush(self.name, timeout=self.timeout)
                return out
            except Exception as e:  # pymilvus raises many types; the message keeps theirs
                raise StoreError(f"{self.uri}: the ingest manifest could not be {what}: {redact(str(e))}. Next: "
                                 "check the server (scripts/milvus.sh start), then run the same command again to "
                                 "complete") from e
