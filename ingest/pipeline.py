"""The incremental ingest pipeline: walk -> diff against the manifest -> parse -> split -> embed -> store.

Parsing runs in a worker process (``ingest.workers``, default 1) so that the next file is parsed
while this one is embedded, a crashing or hanging parser only fails its own file
(``ingest.file_timeout_s``), and the main process never holds a half-parsed hostile file.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ingest.loaders import supported
from ingest.manifest import Entry, file_hash
from ingest.manifests import claim_work, open_manifest
from ingest.sources import resolve as resolve_sources
from ingest.worker import ParseWorker, parse_file
from rag.chunking import CHUNKER_VERSION, TextPiece, chunk_id, split_document
from rag.embedders import embedder_id as spec_embedder_id
from rag.embedders.runtime import check_runtime, runtime_of
from rag.settings import IngestSettings, Settings
from rag.stores import SCHEMA_VERSION, VectorStore, check_info, scoped_id
from rag.types import DEFAULT_COLLECTION, Chunk, check_collection


@dataclass
class FileReport:
    path: str
    source: str
    status: str               # added | updated | unchanged | removed | failed
    pages: int = 0
    chunks: int = 0
    reason: str = ""
    warnings: list[str] = field(default_factory=list)
    # What the loader found (Document.metadata["stats"]); zero for files not parsed in this run.
    text_pages: int = 0       # pages read from their text layer
    ocr_pages: int = 0        # pages read by OCR
    empty_pages: int = 0      # pages with no text at all (reported in warnings)
    tables: int = 0           # tables extracted as Markdown-like text


@dataclass
class IngestResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    files: list[FileReport] = field(default_factory=list)
    embedded: int = 0          # texts actually sent to the embedder (cache misses)

    def summary(self) -> dict[str, Any]:
        """The ``--json`` object of DESIGN.md."""
        return {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                "removed": self.removed, "failed": self.failed, "chunks": self.chunks,
                "seconds": round(self.seconds, 3)}

    @property
    def ingested(self) -> int:
        return self.added + self.updated + self.unchanged


# -- walking ----------------------------------------------------------------------------------
def walk(paths: Iterable[str | Path]) -> Iterator[tuple[Path, Path]]:
    """Yield (file, root) for every supported file; follows symlinks but never loops."""
    seen_dirs: set[str] = set()
    for raw in paths:
        root = Path(raw).expanduser()
        if root.is_file():
            yield root, root.parent
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"no such file or folder: {raw}")
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen_dirs:  # a symlink loop or a folder reached twice
                dirnames[:] = []
                continue
            seen_dirs.add(real)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if not name.startswith(".") and supported(path):
                    yield path, root


def fingerprint(settings: Settings, embedder_id: str) -> str:
    s = settings.ingest
    # CHUNKER: chunk texts changed (context lines, statement tables): re-chunk files ingested before.
    return f"v{SCHEMA_VERSION}|{embedder_id}|{s.chunk_size}|{s.chunk_overlap}|{s.ocr}|c{CHUNKER_VERSION}"


def parse_fingerprint(settings: Settings, embedder_id: str) -> str:
    """What a failed file's verdict depends on: retry it when any of these change."""
    s = settings.ingest
    # "p2": verdicts from before parse workers ran as their own module may blame files for a
    # worker that never started; they are re-parsed once.
    key = json.dumps(["p2", sorted(s.passwords), s.max_file_mb, s.max_pages, s.file_timeout_s, s.ocr])
    return fingerprint(settings, embedder_id) + "|" + hashlib.sha256(key.encode()).hexdigest()[:12]


# -- parsing in worker processes (ingest.worker) ------------------------------------------------
# Looked up at call time, so tests can swap in a parser that hangs or crashes (it is sent to the
# worker by reference, like any pickled function).
_parse = parse_file


class _Parser:
    """Parses files ahead of the consumer: ``workers`` processes, one file each at a time, results
    in the order the files were given; ``workers == 0`` parses inline."""

    def __init__(self, settings: IngestSettings):
        self.settings = settings

    def run(self, paths: list[str]) -> Iterator[tuple[str, tuple[str, Any]]]:
        if self.settings.workers == 0:
            for p in paths:
                yield p, _parse(p, self.settings)
            return
        todo = deque(paths)
        idle = [ParseWorker() for _ in range(self.settings.workers)]
        busy: deque[tuple[str, ParseWorker, float]] = deque()

        def fill() -> None:
            while todo and idle:
                worker, path = idle.pop(), todo.popleft()
                worker.submit(_parse, path, self.settings)
                busy.append((path, worker, time.monotonic()))

        try:
            fill()
            while busy:
                path, worker, sent = busy.popleft()
                outcome = worker.result(sent, self.settings.file_timeout_s)
                idle.append(worker)
                fill()  # the next file parses while the caller embeds this one
                yield path, outcome
        finally:
            for worker in idle + [w for _, w, _ in busy]:
                worker.close()


# -- the pipeline -----------------------------------------------------------------------------
class Ingestor:
    """Runs one ingest over a store into one collection (its manifest rows, its chunks: the same
    file in another collection is never touched). The embedder is created lazily: a no-change
    run loads none."""

    def __init__(self, settings: Settings, store: VectorStore, embedder_factory: Callable[[], Any],
                 *, progress: bool | None = None, log: Callable[[str], None] | None = None,
                 collection: str = DEFAULT_COLLECTION):
        self.settings = settings
        self.collection = check_collection(collection)
        self.store = store
        self._embedder_factory = embedder_factory
        self._embedder = None
        # Server stores keep a shared manifest in the store (ingest/manifests/); others a local SQLite.
        self.manifest = open_manifest(settings.store_uri, settings.data_dir)
        self.progress = sys.stderr.isatty() if progress is None else progress
        self.log = log or (lambda msg: None)
        self.embedded = 0  # texts sent to the embedder (cache misses) in this run

    @property
    def embedder(self):
        if self._embedder is None:
            self._embedder = self._embedder_factory()
            expected = {"embedder": self._embedder.id, "dim": self._embedder.dim}
            check_info(self.store, expected)
            check_runtime(self.store.get_info(), self._embedder, self.store.uri)
        return self._embedder

    def _source_name(self, path: Path, root: Path, taken: dict[str, str]) -> str:
        rel = path.name if root == path.parent and path.is_file() and not root.is_dir() else None
        try:
            rel = rel or path.relative_to(root).as_posix()
        except ValueError:
            rel = path.name
        real = _realpath(path)
        for candidate in (rel, f"{Path(_realpath(root)).name}/{rel}", real):
            owner = taken.get(candidate)
            if owner is None or owner == real:
                return candidate
        return real

    def run(self, paths: Iterable[str | Path], *, on_file: Callable[[FileReport], None] | None = None,
            retry_failed: bool = False) -> IngestResult:
        """Ingest ``paths``; ``retry_failed`` re-parses files whose failure is remembered.

        A path may be an fsspec URL (``s3://bucket/prefix``): it is synced to a mirror folder first
        (ingest/sources.py)."""
        t0 = time.perf_counter()
        result = IngestResult()
        paths, self.origins = resolve_sources(list(paths), self.settings.data_dir)
        embedder_id = self._embedder.id if self._embedder else spec_embedder_id(self.settings.embedder)
        info = self.store.get_info()
        if info and info.get("embedder") not in (None, embedder_id):
            check_info(self.store, {"embedder": embedder_id, "dim": info.get("dim")})
        fp = fingerprint(self.settings, embedder_id)
        self._parse_fp = parse_fingerprint(self.settings, embedder_id)
        entries = {e.path: e for e in self.manifest.entries(self.collection)}
        taken = {e.source: e.path for e in entries.values()}
        roots = [Path(_realpath(Path(p).expanduser())) for p in paths]
        found: list[tuple[Path, str, Entry | None]] = []
        seen: set[str] = set()
        for path, root in walk(paths):
            real = _realpath(path)
            if real in seen:
                continue
            seen.add(real)
            old = entries.get(real)
            source = old.source if old else self._source_name(path, root, taken)
            taken[source] = real
            found.append((path, source, old))

        # Classify without parsing: size+mtime first, content hash only when those changed.
        work: list[tuple[Path, str, Entry | None, str, os.stat_result]] = []
        for path, source, old in found:
            try:
                st = path.stat()
            except OSError as e:
                self._fail(result, path, source, f"cannot read file: {e.strerror or e}", on_file)
                continue
            real = str(path.resolve())
            if old and old.fingerprint == {"done": fp, "failed": self._parse_fp}.get(old.status):
                same = old.size == st.st_size and old.mtime_ns == st.st_mtime_ns
                if not same:
                    try:
                        same = file_hash(path) == old.hash
                    except OSError as e:
                        self._fail(result, path, source, f"cannot read file: {e.strerror or e}", on_file)
                        continue
                    if same:
                        old.size, old.mtime_ns = st.st_size, st.st_mtime_ns
                        self.manifest.put(old)
                if same and old.status == "failed":
                    if not retry_failed:
                        self._fail(result, path, source, old.reason, on_file)  # same bytes, same verdict
                        continue
                elif same:
                    self._unchanged(result, real, source, old, on_file)
                    continue
            work.append((path, source, old, "", st))

        # Files under the given folders that are gone (or were pending) are removed from the store.
        for real, old in entries.items():
            if real in seen or not any(_is_under(Path(real), r) for r in roots):
                continue
            if Path(real).exists() and supported(Path(real)):
                continue  # still there but outside what was walked (e.g. hidden folder): leave it
            self.store.delete_source(old.source, self.collection)
            self.manifest.remove(real, self.collection)
            result.removed += 1
            rep = FileReport(real, old.source, "removed")
            result.files.append(rep)
            on_file and on_file(rep)

        if work:
            self._process(work, fp, result, on_file)
        result.seconds = time.perf_counter() - t0
        result.embedded = self.embedded
        return result

    def _process(self, work, fp: str, result: IngestResult, on_file) -> None:
        work = claim_work(self, work, fp, result, on_file)  # a shared manifest: leave others' files to them
        bar = self._bar(len(work), "ingest")
        by_path = {str(p): (p, src, old, st) for p, src, old, _, st in work}
        t0 = time.perf_counter()
        try:
            for path_str, (status, payload) in _Parser(self.settings.ingest).run(list(by_path)):
                path, source, old, st = by_path[path_str]
                real = str(path.resolve())
                if status != "ok":
                    self._fail(result, path, source, payload, on_file)
                    if status == "error":  # the file's own fault ("transient": touch nothing, retry)
                        # A file that was ingested before but now fails keeps nothing stale.
                        if old is not None and old.status != "failed":
                            self.store.delete_source(old.source, self.collection)
                        self._remember_failure(path, real, source, st, payload)
                else:
                    doc, pieces = payload
                    n = self._store_file(path, real, source, doc, pieces, fp, st, old)
                    self._stored(result, real, source, doc, n, old, on_file)
                if bar is not None:
                    rate = result.chunks / max(1e-9, time.perf_counter() - t0)
                    bar.set_postfix(chunks=result.chunks, rate=f"{rate:.0f} chunks/s", refresh=False)
                    bar.update(1)
        finally:
            self._end_run(bar)

    def _stored(self, result: IngestResult, real: str, source: str, doc, n: int, old, on_file) -> None:
        """Count a file whose ``n`` chunks were written and report it (``doc`` may hold its pages or,
        from the Ray engine, only ``metadata["pages"]``)."""
        updated = old is not None and old.status != "failed"
        stats = doc.metadata.get("stats") or {}
        pages = int(doc.metadata.get("pages", len(doc.pages)))
        rep = FileReport(real, source, "updated" if updated else "added", pages=pages, chunks=n,
                         warnings=list(doc.warnings), text_pages=int(stats.get("text_pages", pages)),
                         ocr_pages=int(stats.get("ocr_pages", 0)), empty_pages=int(stats.get("empty_pages", 0)),
                         tables=int(stats.get("tables", 0)))
        if updated:
            result.updated += 1
        else:
            result.added += 1
        result.chunks += n
        result.files.append(rep)
        on_file and on_file(rep)

    def _bar(self, total: int, desc: str):
        """The files progress bar on stderr (None when progress is off)."""
        if not self.progress:
            return None
        from tqdm import tqdm

        return tqdm(total=total, unit="file", desc=desc, file=sys.stderr, dynamic_ncols=True)

    def _end_run(self, bar) -> None:
        """Close the bar and make buffered writes durable, whatever ended the run."""
        if bar is not None:
            bar.close()
        flush = getattr(self.store, "flush", None)
        if flush:
            flush()

    def _remember_failure(self, path: Path, real: str, source: str, st: os.stat_result,
                          reason: str) -> None:
        try:
            digest = file_hash(path)
        except OSError:
            self.manifest.remove(real, self.collection)
            return
        self.manifest.put(Entry(real, source, st.st_size, st.st_mtime_ns, digest, self._parse_fp, 0, "failed",
                                reason, self.collection))

    def _store_file(self, path: Path, real: str, source: str, doc, pieces: list[TextPiece], fp: str,
                    st: os.stat_result, old: Entry | None) -> int:
        emb = self.embedder
        pieces = _refit(pieces, doc, self.settings.ingest, emb)
        digest = file_hash(path)
        entry = Entry(real, source, st.st_size, st.st_mtime_ns, digest, fp, len(pieces), "pending",
                      collection=self.collection)
        self.manifest.put(entry)                        # 1. say what we are about to do
        self.store.delete_source(source, self.collection)  # 2. drop whatever an earlier run left
        meta = {k: v for k, v in doc.metadata.items() if k in ("format", "title")}
        chunks = [Chunk(scoped_id(self.collection, chunk_id(source, i, p.text)), p.text, source, p.page, i, digest,
                        {**meta, **p.meta}, self.collection)
                  for i, p in enumerate(pieces)]
        self._ensure_info(emb)
        step = self.settings.ingest.batch_size * 8
        misses = getattr(emb, "misses", 0)
        for i in range(0, len(chunks), step):          # 3. embed (cached) and store
            part = chunks[i:i + step]
            self.store.upsert(part, emb.embed([c.text for c in part]))
        self.embedded += getattr(emb, "misses", 0) - misses
        entry.status = "done"
        self.manifest.put(entry)                        # 4. commit the file
        return len(chunks)

    def _ensure_info(self, emb) -> None:
        want = {"embedder": emb.id, "dim": emb.dim, "schema": SCHEMA_VERSION,
                "chunk_size": self.settings.ingest.chunk_size, "chunk_overlap": self.settings.ingest.chunk_overlap,
                "max_tokens": emb.max_tokens, **runtime_of(emb)}
        if self.store.get_info() != want:
            self.store.set_info(want)

    def _fail(self, result: IngestResult, path: Path, source: str, reason: str, on_file) -> None:
        result.failed.append({"path": str(path), "reason": reason})
        rep = FileReport(str(path), source, "failed", reason=reason)
        result.files.append(rep)
        on_file and on_file(rep)

    def _unchanged(self, result: IngestResult, real: str, source: str, old: Entry, on_file) -> None:
        result.unchanged += 1
        rep = FileReport(real, source, "unchanged", chunks=old.chunks)
        result.files.append(rep)
        on_file and on_file(rep)

    def close(self) -> None:
        self.manifest.close()


def _refit(pieces: list[TextPiece], doc, settings: IngestSettings, emb) -> list[TextPiece]:
    """Re-split pieces longer than the embedder's token limit (never truncate silently)."""
    counts = emb.count_tokens([p.text for p in pieces]) if pieces else []
    if all(c <= emb.max_tokens for c in counts):
        return pieces
    return split_document(doc, settings.chunk_size, settings.chunk_overlap,
                          max_tokens=emb.max_tokens, count_tokens=emb.count_tokens)


def _realpath(path: Path) -> str:
    """``path.resolve()`` without its RuntimeError on a symlink loop (the stat that follows fails
    with a one-line reason instead, and only that file is reported)."""
    return os.path.realpath(path)


def _is_under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def result_dict(result: IngestResult) -> dict[str, Any]:
    out = result.summary()
    out["files"] = [asdict(f) for f in result.files]
    return out
