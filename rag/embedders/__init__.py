"""Embedders: one protocol, one registry keyed by spec prefix.

A spec is ``st:NAME`` (sentence-transformers, the default when no prefix is given) or any name a
registered prefix claims. Backends are imported only when chosen.
"""

from __future__ import annotations

import importlib
from typing import Protocol, runtime_checkable

import numpy as np

from rag.errors import ConfigError


@runtime_checkable
class Embedder(Protocol):
    id: str            # stable identifier recorded in the index
    dim: int
    max_tokens: int    # inputs longer than this are truncated by the model

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalised float32 matrix, one row per text."""

    def embed_query(self, text: str) -> np.ndarray:
        """L2-normalised float32 vector for a query."""

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text takes in the model, to chunk within ``max_tokens``."""


REGISTRY: dict[str, str] = {
    "st": "rag.embedders.sentence_transformers:SentenceTransformerEmbedder",
}


def _load(target: str):
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def parse_spec(spec: str) -> tuple[str, str]:
    """``'st:NAME'`` -> ``('st', 'NAME')``; a bare name or path is sentence-transformers'.

    Raises:
        ConfigError: an unknown prefix (the message lists the known ones).
    """
    prefix, sep, rest = spec.partition(":")
    if sep and prefix in REGISTRY:
        return prefix, rest
    if sep and len(prefix) > 1 and not prefix.startswith(("/", ".")) and "/" not in prefix:
        raise ConfigError(f"unknown embedder prefix '{prefix}' in '{spec}' (known: {', '.join(sorted(REGISTRY))})")
    return "st", spec


def embedder_id(spec: str) -> str:
    """The id an index records for ``spec``, without loading the model: the same string the
    opened embedder reports as ``.id`` (``st:all-MiniLM-L6-v2`` and ``all-MiniLM-L6-v2`` are one)."""
    from rag.model_paths import embedder_id_for

    prefix, rest = parse_spec(spec)
    return embedder_id_for(rest) if prefix == "st" else spec


def open_embedder(spec: str, *, device: str = "cpu", precision: str = "auto") -> Embedder:
    """Open the embedder a spec names. ``precision`` reaches other backends only when not the default."""
    prefix, rest = parse_spec(spec)
    options = {"precision": precision} if prefix == "st" or precision != "auto" else {}
    return _load(REGISTRY[prefix])(rest, device=device, **options)
