"""The loop's stages, one module each, run in this order by :func:`loop.pipeline.run`:

| stage | module | writes (under OUT) |
| --- | --- | --- |
| ``ingest`` | :mod:`loop.stages.ingest` | ``index/``, ``ingest.json`` |
| ``synthesise`` | :mod:`loop.stages.synthesise` | ``qa.jsonl``, ``synth_report.json`` |
| ``split`` | :mod:`loop.stages.split` | ``split/{train,val,test}.jsonl``, ``split/split.json`` |
| ``teach`` (with ``teacher.model``) | :mod:`loop.stages.teach` | ``teach/{train,val}.jsonl``, ``teach_report.json``, ``teacher_cache.jsonl`` |
| ``finetune`` | :mod:`loop.stages.train` | ``finetune/train.jsonl``, ``adapter/`` |
| ``eval`` | :mod:`loop.stages.evaluate` | ``metrics.json``, ``eval_rows.jsonl``, ``registry.json`` |

Each is ``run(params, paths, ctx) -> info``: ``info`` (a small dict of counts) goes into the
stage's marker and, when MLflow is on, into the stage's run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loop.params import LoopParams
from loop.workdir import Paths
from rag.settings import Settings

if TYPE_CHECKING:
    from loop.tracking import LoopTracker

__all__ = ["Context", "open_rag"]


@dataclass
class Context:
    """What a stage gets besides its parameters and paths."""

    settings: Settings                  # loaded once, by the command line
    tracker: LoopTracker | None = None  # when MLflow is on


def open_rag(params: LoopParams, paths: Paths, settings: Settings, llm: str | None = None) -> Any:
    """:class:`rag.RAG` on the loop's own store (``OUT/index``), with the loop's chunking and answer length."""
    from rag import RAG

    kw: dict[str, Any] = {"ingest__chunk_size": params.ingest.chunk_size,
                          "ingest__chunk_overlap": params.ingest.chunk_overlap,
                          "llm__max_new_tokens": params.eval.max_new_tokens}
    if params.eval.threads:
        kw["llm__threads"] = params.eval.threads
    return RAG(store=str(paths.index.resolve()), llm=llm, settings=settings, **kw)
