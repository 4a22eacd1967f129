"""ragtune's retrieval as a LangChain or LlamaIndex retriever (``rag.as_langchain_retriever()``).

Both adapters call ``RAG.retrieve`` and nothing else, so they see the same modes, filters,
validation and scores as ``python -m rag ask``. Each hit keeps its text and, as metadata, its
``source``, ``page``, ``chunk_id``, ``chunk_index`` and the chunk's own metadata; LangChain
documents also carry ``score`` in their metadata (they have no score field), LlamaIndex nodes
carry it on ``NodeWithScore.score``. Usage: docs/interop.md.

The classes are built on first use (``rag.interop.LangChainRetriever`` works as an import), so
``import rag`` never imports either framework and a missing one is reported by extra name.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

from rag.errors import MissingDependencyError
from rag.types import Filter, Hit

if TYPE_CHECKING:
    from rag.api import RAG

# The two classes are built on first access by __getattr__ at the bottom, hence the noqa.
__all__ = ["LangChainRetriever", "LlamaIndexRetriever",  # noqa: F822
           "as_langchain_retriever", "as_llamaindex_retriever", "hit_metadata"]

# LangChain reads these from ``invoke(..., **kwargs)`` itself and still passes them on.
_LANGCHAIN_OWN_KWARGS = ("verbose",)
# Shown to LlamaIndex's LLM prompt and embedder as noise (ids), so kept out of both views.
_HIDDEN_FROM_LLAMAINDEX = ["chunk_id", "chunk_index"]


def hit_metadata(hit: Hit) -> dict[str, Any]:
    """A hit's metadata for another framework: its own metadata, then source, page and chunk id.

    The ragtune fields come last so a chunk whose metadata happens to hold ``source`` or
    ``page`` cannot hide where the passage really came from.
    """
    meta = dict(hit.metadata)
    meta.update(source=hit.source, page=hit.page, chunk_id=hit.id, chunk_index=hit.chunk_index)
    return meta


def _check(rag: RAG, k: Any, mode: Any) -> None:
    """Refuse a bad ``k`` / ``mode`` when the retriever is built, with RAG.retrieve's own rules."""
    from rag.retrieval import check_retrieval

    check_retrieval(k, mode, None, rag.settings.retrieval)


# -- LangChain -------------------------------------------------------------------------------
@functools.cache
def _langchain_class() -> type:
    try:
        from langchain_core.callbacks import (
            AsyncCallbackManagerForRetrieverRun,
            CallbackManagerForRetrieverRun,
        )
        from langchain_core.documents import Document
        from langchain_core.retrievers import BaseRetriever
        from pydantic import Field, model_validator
    except ModuleNotFoundError as e:
        raise MissingDependencyError("the LangChain retriever (rag.as_langchain_retriever)", "langchain",
                                     e.name) from e

    class LangChainRetriever(BaseRetriever):
        """A LangChain ``BaseRetriever`` over a ``rag.RAG``.

        ``k``, ``mode`` and ``filter`` set here are the defaults (unset: the RAG's settings);
        ``invoke(query, k=..., mode=..., filter=...)`` overrides them for one call.
        """

        rag: Any = Field(exclude=True, repr=False, description="The rag.RAG to retrieve from.")
        k: int | None = Field(None, description="Passages per query (default: retrieval.k).")
        mode: str | None = Field(None, description="dense, bm25, hybrid or mmr (default: retrieval.mode).")
        filter: Any = Field(None, description="rag.Filter or a dict: source, page_min, page_max.")

        @model_validator(mode="before")
        @classmethod
        def _validate(cls, data: Any) -> Any:
            # Before pydantic coerces k, so k=True or k="3" fail as they would in RAG.retrieve;
            # a ConfigError is not a ValueError, so it reaches the caller as itself.
            if isinstance(data, dict) and data.get("rag") is not None:
                _check(data["rag"], data.get("k"), data.get("mode"))
            return data

        def _documents(self, query: str, k: Any, mode: Any, filter: Any,
                       kw: dict[str, Any]) -> list[Document]:
            for name in _LANGCHAIN_OWN_KWARGS:
                kw.pop(name, None)
            hits = self.rag.retrieve(query, k=self.k if k is None else k,
                                     mode=self.mode if mode is None else mode,
                                     filter=self.filter if filter is None else filter, **kw)
            return [Document(page_content=h.text, id=h.id,
                             metadata={**hit_metadata(h), "score": float(h.score)}) for h in hits]

        def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                    k: int | None = None, mode: str | None = None, filter: Any = None,
                                    **kw: Any) -> list[Document]:
            return self._documents(query, k, mode, filter, kw)

        async def _aget_relevant_documents(self, query: str, *,
                                           run_manager: AsyncCallbackManagerForRetrieverRun,
                                           k: int | None = None, mode: str | None = None, filter: Any = None,
                                           **kw: Any) -> list[Document]:
            # Embedding and search are blocking CPU/IO work: a worker thread keeps the loop free.
            return await asyncio.to_thread(self._documents, query, k, mode, filter, kw)

    LangChainRetriever.__qualname__ = "LangChainRetriever"
    return LangChainRetriever


def as_langchain_retriever(rag: RAG, k: int | None = None, mode: str | None = None,
                           filter: Filter | dict[str, Any] | None = None):
    """``rag``'s retrieval as a ``langchain_core.retrievers.BaseRetriever`` (sync and async).

    Returns:
        A ``LangChainRetriever``: ``invoke(question)`` gives ``Document``s whose
        ``page_content`` is the passage and whose metadata holds source, page, score, chunk_id.

    Raises:
        ConfigError: ``k`` is not an integer from 1 to 1000, or ``mode`` is unknown.
        MissingDependencyError: ``langchain-core`` is not installed (extra ``[langchain]``).
    """
    return _langchain_class()(rag=rag, k=k, mode=mode, filter=filter)


# -- LlamaIndex ------------------------------------------------------------------------------
@functools.cache
def _llamaindex_class() -> type:
    try:
        from llama_index.core.retrievers import BaseRetriever
        from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
    except ModuleNotFoundError as e:
        raise MissingDependencyError("the LlamaIndex retriever (rag.as_llamaindex_retriever)", "llamaindex",
                                     e.name) from e

    class LlamaIndexRetriever(BaseRetriever):
        """A LlamaIndex ``BaseRetriever`` over a ``rag.RAG``: nodes keyed by chunk id, with scores.

        Args:
            rag: the ``rag.RAG`` to retrieve from.
            k, mode, filter: as for ``RAG.retrieve`` (unset: the RAG's settings).
            **kwargs: LlamaIndex's own (``callback_manager``, ``verbose``, ...).
        """

        def __init__(self, rag: RAG, k: int | None = None, mode: str | None = None,
                     filter: Filter | dict[str, Any] | None = None, **kwargs: Any):
            _check(rag, k, mode)
            super().__init__(**kwargs)
            self.rag, self.k, self.mode, self.filter = rag, k, mode, filter

        def _nodes(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            hits = self.rag.retrieve(query_bundle.query_str, k=self.k, mode=self.mode, filter=self.filter)
            return [NodeWithScore(node=TextNode(text=h.text, id_=h.id, metadata=hit_metadata(h),
                                                excluded_llm_metadata_keys=list(_HIDDEN_FROM_LLAMAINDEX),
                                                excluded_embed_metadata_keys=list(_HIDDEN_FROM_LLAMAINDEX)),
                                  score=float(h.score))
                    for h in hits]

        def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            return self._nodes(query_bundle)

        async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
            # The base class would run the blocking retrieval on the event loop; a thread does not.
            return await asyncio.to_thread(self._nodes, query_bundle)

    LlamaIndexRetriever.__qualname__ = "LlamaIndexRetriever"
    return LlamaIndexRetriever


def as_llamaindex_retriever(rag: RAG, k: int | None = None, mode: str | None = None,
                            filter: Filter | dict[str, Any] | None = None):
    """``rag``'s retrieval as a ``llama_index.core.retrievers.BaseRetriever`` (sync and async).

    Returns:
        A ``LlamaIndexRetriever``: ``retrieve(question)`` gives ``NodeWithScore``s whose node is
        a ``TextNode`` (``id_`` = chunk id; metadata: source, page, chunk_id, chunk_index).

    Raises:
        ConfigError: ``k`` is not an integer from 1 to 1000, or ``mode`` is unknown.
        MissingDependencyError: ``llama-index-core`` is not installed (extra ``[llamaindex]``).
    """
    return _llamaindex_class()(rag, k=k, mode=mode, filter=filter)


def __getattr__(name: str) -> type:
    # The class names resolve lazily (PEP 562), so importing this module imports no framework.
    if name == "LangChainRetriever":
        return _langchain_class()
    if name == "LlamaIndexRetriever":
        return _llamaindex_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
