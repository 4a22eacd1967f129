"""ragtune: ask questions over your own documents with an LLM you can fine-tune on them.

>>> from rag import RAG
>>> rag = RAG()                      # embedded store under ./.ragtune, packaged models
>>> rag.ingest(["./docs"])
>>> rag.ask("What is the refund policy?").text
"""

import logging as _logging

# bitsandbytes warns on import that an optional CPU kernel package is absent; it is harmless
# (and that package would fetch from a model hub at run time, which we never do).
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)

from rag.errors import ConfigError, RagtuneError, StoreError  # noqa: E402
from rag.settings import Settings, load_settings  # noqa: E402
from rag.types import Answer, Chunk, Document, Filter, Hit, Page, Source  # noqa: E402

__all__ = ["RAG", "Settings", "load_settings", "Answer", "Chunk", "Document", "Filter", "Hit", "Page", "Source",
           "RagtuneError", "ConfigError", "StoreError"]


def __getattr__(name: str):
    # RAG pulls in numpy and the store table; keep `import rag` light for CLIs' --help.
    if name == "RAG":
        from rag.api import RAG

        return RAG
    raise AttributeError(name)
