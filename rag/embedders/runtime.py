"""Which embedder runtimes may share an index and an embedding cache (docs/embedders.md).

An index records the embedder id, its dimension and, since the openvino backend, the runtime that
wrote it (``embedder_backend``, ``embedder_precision``). Runtimes whose vectors agree to a cosine
of ~0.9999 (torch fp32, torch bf16 autocast, OpenVINO fp32/bf16) form one family: they share
indexes and cached vectors. Static int8 is its own family for the embedding cache, so a cached
vector is always the one this runtime computes; whether an int8 embedder may open a float index
(and the reverse) is ``MIXABLE``, decided by bench/retrieval_bench.py's cross-runtime retrieval check.
"""

from __future__ import annotations

from typing import Any

from rag.errors import IndexMismatchError

FAMILY = {"float32": "float", "bfloat16": "float", "int8": "int8"}
# Families whose vectors may meet in one index: queries of one searching documents of the other.
# int8 <-> float passes the same quality gates as int8 alone (bench/results/embedders.md, cross rows:
# int8 queries on an fp32 index: hybrid nDCG@10 0.7906 vs 0.7899, SQuAD hybrid hit@5 0.9633 = fp32's;
# fp32 queries on an int8 index: 0.7909, 0.9667), so an index may be switched to int8 without re-embedding.
MIXABLE = {frozenset({"float"}), frozenset({"int8"}), frozenset({"float", "int8"})}


def runtime_of(emb: Any) -> dict:
    """``{"embedder_backend": ..., "embedder_precision": ...}`` of an embedder ({} when it has none)."""
    return dict(getattr(emb, "runtime", None) or {})


def family(precision: str | None) -> str:
    # Indexes from before runtimes were recorded were written by torch in fp32 or bf16.
    return FAMILY.get(precision or "float32", precision or "float32")


def compatible(built: str | None, now: str | None) -> bool:
    return frozenset({family(built), family(now)}) in MIXABLE


def cache_namespace(emb: Any) -> str:
    """The id the embedding cache keys vectors under: the embedder id for the float family (so
    caches made before runtimes existed stay valid), id + ``#int8`` for int8."""
    fam = family(runtime_of(emb).get("embedder_precision"))
    return emb.id if fam == "float" else f"{emb.id}#{fam}"


def check_runtime(info: dict | None, emb: Any, where: str = "the index") -> None:
    """Refuse to add to or search an index whose vectors another, incompatible runtime wrote.

    Raises:
        IndexMismatchError: naming both runtimes and the two ways out.
    """
    built = (info or {}).get("embedder_precision")
    now = runtime_of(emb).get("embedder_precision")
    if not info or now is None or compatible(built, now):
        return
    raise IndexMismatchError(
        f"{where} was built by the {info.get('embedder_backend', 'torch')} embedder runtime in "
        f"{built or 'float32'}, but the current one is {runtime_of(emb).get('embedder_backend')} in {now}; "
        "their vectors are not interchangeable (docs/embedders.md). Set embedder_backend / "
        "embedder_quantization back to what built the index, or re-embed into a new store: "
        "python -m ingest PATH --store NEW_URI")
