"""The Python API other apps embed: ``from rag import RAG``.

Everything the CLI and the UI do is one call here. Heavy parts (embedder, store, LLM) are built
on first use and kept, so a second question reloads nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError, DataError, redact
from rag.embedders.runtime import check_runtime, runtime_of
from rag.settings import Settings, load_settings
from rag.stores import SCHEMA_VERSION, VectorStore, check_info, open_store, scoped_id
from rag.types import DEFAULT_COLLECTION, Chunk, Filter, Hit, check_collection


class RAG:
    """Ask questions over your documents.

    Args:
        store: a store URI (default: the embedded store under the data directory).
        llm: an LLM spec (``hf:...``, ``gguf:...``, ``openai:...``; default: packaged SmolLM2).
        collection: the collection ``ingest`` / ``add_texts`` write into when they name none
            (questions search every collection unless given ``collections=[...]``).
        settings: a full settings tree; ``store`` / ``llm`` / ``overrides`` apply on top of it.
        overrides: dotted settings, e.g. ``{"retrieval.k": 8}``.

    Raises:
        ConfigError: an invalid collection name (letters, digits, _ and -).
    """

    def __init__(self, store: str | None = None, llm: str | None = None, *, collection: str = DEFAULT_COLLECTION,
                 settings: Settings | None = None, config: str | Path | None = None, **overrides: Any):
        self.collection = check_collection(collection)
        flags = {k.replace("__", "."): v for k, v in overrides.items()}
        flags.update({"store": store, "llm.spec": llm})
        if settings is None:
            settings = load_settings(config, overrides=flags)
        else:
            data = settings.model_dump()
            for dotted, value in flags.items():
                if value is None:
                    continue
                node = data
                *parents, last = dotted.split(".")
                for part in parents:
                    node = node[part]
                node[last] = value
            settings = Settings.model_validate(data)
        self.settings = settings
        self._store: VectorStore | None = None
        self._embedder = None
        self._retriever = None
        self._llm = None
        self._lock = threading.RLock()

    # -- parts, built on first use ------------------------------------------------------------
    @property
    def store(self) -> VectorStore:
        with self._lock:
            if self._store is None:
                self._store = open_store(self.settings.store_uri)
            return self._store

    @property
    def embedder(self):
        with self._lock:
            if self._embedder is None:
                from rag.embedders import open_configured

                self._embedder = open_configured(self.settings)  # backend, precision, cache: rag/embedders
            return self._embedder

    @property
    def retriever(self):
        with self._lock:
            if self._retriever is None:
                from rag.retrieval import Retriever

                emb = self.embedder
                check_info(self.store, {"embedder": emb.id, "dim": emb.dim})
                check_runtime(self.store.get_info(), emb, self.store.uri)
                self._retriever = Retriever(self.store, emb, self.settings.retrieval)
            return self._retriever

    @property
    def llm(self):
        with self._lock:
            if self._llm is None:
                from rag.llms import open_llm

                self._llm = open_llm(self.settings.llm.spec, self.settings)
            return self._llm

    # -- ingest -------------------------------------------------------------------------------
    def ingest(self, paths: Iterable[str | Path], *, collection: str | None = None, progress: bool | None = False,
               on_file=None, retry_failed: bool = False, engine: str | None = None, ray_address: str | None = None):
        """Ingest files and folders (the same pipeline as ``python -m ingest``) into ``collection``
        (default: the one this RAG was made with). Incremental per collection: files removed from
        the given folders are removed from that collection only.

        Works from a plain script without a ``__main__`` guard, a notebook or a web app: parse
        workers are started as their own module. ``retry_failed`` re-parses files whose earlier
        failure is remembered (they are otherwise reported again until they change).

        ``engine="ray"`` (default: ``ingest.engine``) parses and embeds on the Ray cluster at
        ``ray_address`` (default: ``ingest.ray_address``, ``RAY_ADDRESS``, else a local Ray).

        Returns:
            ``ingest.pipeline.IngestResult`` (``.summary()`` is the CLI's ``--json`` object).
        """
        from ingest.pipeline import Ingestor

        with self._lock:
            coll = check_collection(collection or self.collection)
            if (engine or self.settings.ingest.engine) != "local":
                from ingest.ray_engine import RayIngestor, check_engine

                check_engine(engine or self.settings.ingest.engine)
                address = ray_address or self.settings.ingest.ray_address
                ing = RayIngestor(self.settings, self.store, address=address, progress=progress, collection=coll)
            else:
                ing = Ingestor(self.settings, self.store, lambda: self.embedder, progress=progress, collection=coll)
            try:
                return ing.run(list(paths), on_file=on_file, retry_failed=retry_failed)
            finally:
                ing.close()

    def add_texts(self, texts: Sequence[str], metadatas: Sequence[dict[str, Any]] | None = None,
                  ids: Sequence[str] | None = None, *, split: bool = False,
                  collection: str | None = None) -> list[str]:
        """Add raw texts (e.g. a JSONL corpus). Each metadata may carry ``source`` and ``page``.

        Texts are stored as given unless ``split`` is true (then chunked like files), in
        ``collection`` (default: this RAG's). Returns the stored chunk ids: outside the default
        collection they are derived from (collection, id) (``rag.stores.scoped_id``), so a write
        to one collection can never replace a chunk of another.

        Raises:
            DataError: an empty text, a page that is not a whole number, lengths that differ;
                naming the index and field. Nothing is stored then.
        """
        from rag.chunking import chunk_id, split_text

        coll = check_collection(collection or self.collection)
        texts, metadatas = _check_texts(texts, metadatas, ids)
        chunks: list[Chunk] = []
        for i, (text, meta) in enumerate(zip(texts, metadatas)):
            meta = dict(meta)
            source = str(meta.pop("source", ids[i] if ids else f"text-{i}"))
            page = meta.pop("page", 0)
            parts = [p for p, _ in split_text(text, self.settings.ingest.chunk_size,
                                              self.settings.ingest.chunk_overlap)] if split else [text]
            for j, part in enumerate(parts):
                cid = ids[i] if ids and not split else chunk_id(source, j, part)
                chunks.append(Chunk(scoped_id(coll, cid), part, source, page, j, "", meta, coll))
        emb = self.embedder
        with self._lock:
            check_info(self.store, {"embedder": emb.id, "dim": emb.dim})
            check_runtime(self.store.get_info(), emb, self.store.uri)
            if not self.store.get_info():
                self.store.set_info({"embedder": emb.id, "dim": emb.dim, "schema": SCHEMA_VERSION,
                                     **runtime_of(emb)})
            step = self.settings.ingest.batch_size * 16
            for i in range(0, len(chunks), step):
                part = chunks[i:i + step]
                self.store.upsert(part, emb.embed([c.text for c in part]))
            flush = getattr(self.store, "flush", None)
            if flush:
                flush()
        return [c.id for c in chunks]

    # -- retrieval ----------------------------------------------------------------------------
    def retrieve(self, question: str, k: int | None = None, mode: str | None = None,
                 filter: Filter | dict[str, Any] | None = None, *, collections: Sequence[str] | None = None,
                 **kw: Any) -> list[Hit]:
        """Top-k passages for a question: ``mode`` is dense, bm25, hybrid or mmr.

        ``collections`` limits the search to those collections (None = all), inside the search:
        k passages come back whenever the collections hold k. Given both here and in ``filter``,
        the intersection applies.

        Raises:
            ConfigError: a blank question, ``k``/``fetch_k`` not in 1..1000, an unknown mode, an
                invalid collection name.
        """
        self._check(question, k, mode, kw.get("fetch_k"))
        flt = with_collections(_as_filter(filter), collections)
        return self.retriever.retrieve(question, k=k, mode=mode, filter=flt, **kw)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.embedder.embed(texts)

    def as_langchain_retriever(self, k: int | None = None, mode: str | None = None,
                               filter: Filter | dict[str, Any] | None = None):
        """This RAG's retrieval as a LangChain ``BaseRetriever`` (see ``rag.interop``, docs/interop.md).

        Raises:
            ConfigError: a bad ``k`` or ``mode``, refused now rather than at the first query.
            MissingDependencyError: ``langchain-core`` is not installed.
        """
        from rag.interop import as_langchain_retriever

        return as_langchain_retriever(self, k=k, mode=mode, filter=filter)

    def as_llamaindex_retriever(self, k: int | None = None, mode: str | None = None,
                                filter: Filter | dict[str, Any] | None = None):
        """This RAG's retrieval as a LlamaIndex ``BaseRetriever`` (see ``rag.interop``, docs/interop.md).

        Raises:
            ConfigError: a bad ``k`` or ``mode``, refused now rather than at the first query.
            MissingDependencyError: ``llama-index-core`` is not installed.
        """
        from rag.interop import as_llamaindex_retriever

        return as_llamaindex_retriever(self, k=k, mode=mode, filter=filter)

    # -- generation (rag.chain) ---------------------------------------------------------------
    def ask(self, question: str, k: int | None = None, mode: str | None = None,
            filter: Filter | dict[str, Any] | None = None, history: list[dict[str, str]] | None = None,
            *, collections: Sequence[str] | None = None, **gen: Any):
        """Answer with citations from ``collections`` (None = all). Returns ``rag.Answer``.

        ``history`` (earlier turns) makes the question a follow-up: it is rewritten into a
        standalone question before retrieval. ``gen``: temperature, top_p, max_new_tokens, stop.
        """
        from rag import chain

        self._check(question, k, mode)
        return chain.answer(question, retrieve=self._retrieve_fn(k, mode, filter, collections), llm=self.llm,
                            settings=self.settings, history=history, select=self._select_fn(), **gen)

    def stream(self, question: str, k: int | None = None, mode: str | None = None,
               filter: Filter | dict[str, Any] | None = None,
               history: list[dict[str, str]] | None = None, *, collections: Sequence[str] | None = None,
               **gen: Any):
        """Yield answer tokens as they are generated, from ``collections`` (None = all).

        Returns ``rag.chain.StreamingAnswer``: iterate it for the tokens; ``.sources`` is ready
        before the first token and ``.answer`` (the full ``Answer``) after the last.
        """
        from rag import chain

        self._check(question, k, mode)
        return chain.stream(question, retrieve=self._retrieve_fn(k, mode, filter, collections), llm=self.llm,
                            settings=self.settings, history=history, select=self._select_fn(), **gen)

    def chat(self, message: str, history: list[dict[str, str]] | None = None, **kw: Any):
        """One chat turn: the follow-up is rewritten into a standalone question first.

        Returns ``rag.Answer``; append ``{"role": "user", "content": message}`` and
        ``{"role": "assistant", "content": answer.text}`` to the history for the next turn.
        """
        return self.ask(message, history=list(history or []), **kw)

    def _check(self, question: Any, k: Any, mode: Any, fetch_k: Any = None) -> None:
        """Validate a request before anything is loaded (the same rules on every route)."""
        from rag.retrieval import check_question, check_retrieval

        check_question(question)
        check_retrieval(k, mode, fetch_k, self.settings.retrieval)

    def _retrieve_fn(self, k: int | None, mode: str | None, filter: Filter | dict[str, Any] | None,
                     collections: Sequence[str] | None = None):
        flt = with_collections(_as_filter(filter), collections)  # validated before anything runs
        return lambda q: self.retrieve(q, k=k, mode=mode, filter=flt)

    def _select_fn(self):
        """The sentence selection the chain applies before the prompt (``retrieval.sentences``; None when 0)."""
        n = self.settings.retrieval.sentences
        if not n:
            return None
        from rag.selection import select_sentences

        return lambda q, hits: select_sentences(q, hits, self.embed, n)

    # -- info ---------------------------------------------------------------------------------
    def stats(self, collections: Sequence[str] | None = None) -> dict[str, Any]:
        """What the index holds: files, chunks, store (no secrets), embedder, dim, and per
        collection ``{"files", "chunks"}``. ``collections`` limits every count to those (None =
        all); a named collection that holds nothing shows zeros."""
        store = self.store
        info = store.get_info() or {}
        names = None if collections is None else [check_collection(c) for c in dict.fromkeys(collections)]
        sources = store.sources(names)
        counts = store.collections()
        per = {}
        for name in sorted(counts) if names is None else names:
            per[name] = {"files": len(store.sources([name])) if counts.get(name) else 0,
                         "chunks": counts.get(name, 0)}
        return {"files": len(sources), "chunks": sum(sources.values()), "store": redact(store.uri),
                "embedder": info.get("embedder"), "dim": info.get("dim"), "collections": per}

    def collections(self) -> dict[str, int]:
        """Every collection that holds chunks, with its chunk count (for pickers and ``stats``)."""
        return dict(sorted(self.store.collections().items()))

    def loaded(self) -> dict[str, str | None]:
        """Which parts are built so far (for UIs; builds nothing): each one's name, or None."""
        return {"store": redact(self._store.uri) if self._store is not None else None,
                "embedder": getattr(self._embedder, "id", None) if self._embedder is not None else None,
                "llm": (getattr(self._llm, "name", "") or repr(self._llm)) if self._llm is not None else None}

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
            if self._embedder is not None:
                self._embedder.close()
                self._embedder = None
            self._retriever = None

    def __enter__(self) -> "RAG":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _as_filter(filter: Filter | dict[str, Any] | None) -> Filter | None:
    if not isinstance(filter, dict):
        return filter
    try:
        return Filter(**filter)
    except TypeError as e:
        raise ConfigError(f"filter: {e} (known fields: source, page_min, page_max, collections)") from None


def with_collections(filter: Filter | None, collections: Sequence[str] | None) -> Filter | None:
    """``filter`` limited to ``collections`` as well (the intersection when both name some).

    Raises:
        ConfigError: an invalid collection name, or a bare string instead of a list.
    """
    if collections is None:
        return filter
    if isinstance(collections, str):
        raise ConfigError(f"collections: expected a list of names, got the string {collections!r} "
                          "(write collections=[...])")
    names = [check_collection(c) for c in collections]
    if filter is None:
        return Filter(collections=names)
    both = names if filter.collections is None else [c for c in filter.collections if c in names]
    return Filter(source=filter.source, page_min=filter.page_min, page_max=filter.page_max, collections=both)


def _check_texts(texts: Sequence[str], metadatas: Sequence[dict[str, Any]] | None,
                 ids: Sequence[str] | None) -> tuple[list[str], list[dict[str, Any]]]:
    """Validate ``add_texts`` input as a whole before anything is embedded or stored."""
    if isinstance(texts, str):
        raise DataError("texts: expected a list of strings, got one string (wrap it in a list)")
    texts = list(texts)
    metadatas = list(metadatas) if metadatas is not None else [{} for _ in texts]
    if len(metadatas) != len(texts):
        raise DataError(f"metadatas: {len(texts)} texts but {len(metadatas)} metadatas")
    if ids is not None and len(ids) != len(texts):
        raise DataError(f"ids: {len(texts)} texts but {len(ids)} ids")
    out: list[dict[str, Any]] = []
    for i, (text, meta) in enumerate(zip(texts, metadatas)):
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"texts[{i}]: empty or not a string; every text needs some words")
        if not isinstance(meta, dict):
            raise DataError(f"metadatas[{i}]: expected an object, got {type(meta).__name__}")
        page = meta.get("page", 0)
        if isinstance(page, str) and page.strip().isdigit():
            page = int(page)
        if isinstance(page, bool) or not isinstance(page, int) or page < 0:
            raise DataError(f"metadatas[{i}].page: {page!r} is not a page number (a whole number >= 0)")
        out.append({**meta, "page": page})
    return texts, out
