"""Where a store's manifest lives, chosen by the store's scheme.

The embedded store (and any store without an entry here) keeps the SQLite manifest of
``ingest/manifest.py``. A server store listed in ``REGISTRY`` keeps its manifest inside the store
itself, beside the chunks, so every machine ingesting into it sees the same files, hashes and
pending/done/failed states, and takes a lease on a file before working on it (``claim``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

from ingest.manifest import Entry, Manifest, manifest_path
from rag.stores import scheme_of
from rag.types import DEFAULT_COLLECTION

# scheme -> "module:Class", imported only when chosen.
REGISTRY = {"pgvector": "ingest.manifests.pgvector:PgManifest",
            "milvus": "ingest.manifests.milvus:MilvusManifest"}


class ManifestStore(Protocol):
    """The interface of ``ingest.manifest.Manifest``; shared manifests add ``claim`` and ``release``."""

    def get(self, path: str, collection: str = DEFAULT_COLLECTION) -> Entry | None: ...

    def entries(self, collection: str | None = DEFAULT_COLLECTION) -> list[Entry]: ...

    def put(self, e: Entry) -> None: ...

    def remove(self, path: str, collection: str = DEFAULT_COLLECTION) -> None: ...

    def close(self) -> None: ...


def open_manifest(store_uri: str, data_dir: Path) -> ManifestStore:
    target = REGISTRY.get(scheme_of(store_uri))
    if target is None:
        return Manifest(manifest_path(store_uri, data_dir))
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(store_uri)


def claim_work(ing, work: list, fp: str, result, on_file) -> list:
    """Keep the files of ``work`` this run may do: with a shared manifest (one that can ``claim``),
    files another live run holds, or has just stored with the same bytes, are left to it and
    reported as unchanged (their reason says why). Local manifests keep everything."""
    from ingest.manifest import file_hash
    from ingest.pipeline import FileReport

    claim = getattr(ing.manifest, "claim", None)
    if claim is None:
        return work
    mine = []
    for item in work:
        path, source, _old, _, st = item
        real = str(path.resolve())
        try:
            digest = file_hash(path)
        except OSError:
            mine.append(item)  # the normal path reports the unreadable file
            continue
        verdict, row = claim(Entry(real, source, st.st_size, st.st_mtime_ns, digest, fp, 0, "pending",
                                   collection=ing.collection))
        if verdict == "ok":
            mine.append(item)
            continue
        why = "stored by another run" if verdict == "done" else "being ingested by another run"
        result.unchanged += 1
        rep = FileReport(real, source, "unchanged", chunks=row.chunks if verdict == "done" else 0, reason=why)
        result.files.append(rep)
        on_file and on_file(rep)
    return mine
