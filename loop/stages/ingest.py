"""Stage ``ingest``: DOCS into a fresh embedded store at ``OUT/index`` through :class:`rag.RAG`."""

from __future__ import annotations

import json
import shutil
from typing import Any

from loop.params import LoopParams
from loop.stages import Context, open_rag
from loop.workdir import Paths
from rag.errors import DataError


def run(params: LoopParams, paths: Paths, ctx: Context) -> dict[str, Any]:
    if paths.index.exists():  # chunker settings or documents changed: rebuild rather than patch
        shutil.rmtree(paths.index)
    with open_rag(params, paths, ctx.settings) as rag:
        result = rag.ingest([params.docs])
        summary = result.summary()
        stats = rag.stats()
    report = {**summary, "files_in_index": stats["files"], "chunks_in_index": stats["chunks"]}
    if not stats["chunks"]:
        raise DataError(f"nothing was ingested from {params.docs}: {summary.get('failed')}")
    paths.ingest_report.write_text(json.dumps(report, indent=2, default=str))
    return {"files": stats["files"], "chunks": stats["chunks"]}
