"""ragtune: ask questions over your own documents with an LLM you can fine-tune on them.

>>> from rag import RAG
>>> rag = RAG()                      # embedded store under ./.ragtune, packaged models
>>> rag.ingest(["./docs"])
>>> rag.ask("What is the refund policy?").text
"""

from rag.errors import ConfigError, RagtuneError, StoreError
from rag.settings import Settings, load_settings
from rag.types import Chunk, Document, Filter, Hit, Page

__all__ = ["RAG", "Settings", "load_settings", "Chunk", "Document", "Filter", "Hit", "Page",
           "RagtuneError", "ConfigError", "StoreError"]


def __getattr__(name: str):
    # RAG pulls in numpy and the store table; keep `import rag` light for CLIs' --help.
    if name == "RAG":
        from rag.api import RAG

        return RAG
    raise AttributeError(name)
