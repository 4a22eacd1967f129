"""Copy an index between any two stores, vectors included (no re-embedding).

    from rag.stores import open_store
    from rag.stores.migrate import copy_index
    copy_index(open_store(".ragtune/index"), open_store("pgvector://postgres@127.0.0.1:54329/ragtune"))

Backs ``python -m ingest --copy-from URI_A --store URI_B``.
"""

from __future__ import annotations

import sys
from typing import Any

from rag.errors import IndexMismatchError
from rag.stores import VectorStore


def copy_index(src: VectorStore, dst: VectorStore, batch_size: int = 1000, *,
               progress: bool | None = None) -> int:
    """Copy the build info and every chunk with its vector from ``src`` into ``dst``.

    Upserts by chunk id, so running it again (or after an interruption) is safe and does not
    duplicate. The destination's info is replaced by the source's.

    Args:
        src: the store to read (``iter_chunks``).
        dst: the store to write; may already hold chunks of the same embedder.
        batch_size: chunks per read/write batch.
        progress: show a tqdm bar on stderr; default: only when stderr is a terminal.

    Returns:
        The number of chunks copied.

    Raises:
        IndexMismatchError: ``dst`` already holds an index built with another embedder or dim.
        StoreError: either store failed.
    """
    info: dict[str, Any] | None = src.get_info()
    old = dst.get_info()
    if info and old:
        for key in ("embedder", "dim"):
            if key in info and key in old and info[key] != old[key]:
                raise IndexMismatchError(
                    f"cannot copy {src.uri} into {dst.uri}: the destination was built with {key} "
                    f"'{old[key]}', the source with '{info[key]}'. Copy into an empty store instead")
    if info:
        dst.set_info(info)
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=src.count(), unit="chunk", desc=f"copy to {dst.uri}", file=sys.stderr)
    copied = 0
    try:
        for chunks, vectors in src.iter_chunks(batch_size):
            dst.upsert(chunks, vectors)
            copied += len(chunks)
            if bar is not None:
                bar.update(len(chunks))
    finally:
        if bar is not None:
            bar.close()
    return copied
