"""The closed loop: documents -> synthesised Q&A -> QLoRA adapter -> measured gain, as one
resumable pipeline (``python -m loop``; ``dvc repro`` runs the same stages from ``dvc.yaml``).

The one package that uses ``rag``, ``ingest`` (through :class:`rag.RAG`), ``finetune`` and ``eval``
together; none of them imports it. Parts:

- :mod:`loop.params`: typed parameters, one section per stage (``params.yaml``).
- :mod:`loop.workdir`: the files under OUT, stage fingerprints and markers, JSONL rows.
- :mod:`loop.stages`: ``ingest``, ``synthesise``, ``split``, ``finetune``, ``eval``, a module each.
- :mod:`loop.tracking`: the MLflow parent run, nested stage runs, the ``champion`` alias.
- :mod:`loop.pipeline`: :func:`run`, the stages in order, finished ones skipped.

    from loop import load_params, run
    from rag.settings import load_settings
    run(load_params("params.yaml", ["finetune.max_steps=50"]), load_settings())
"""

from loop.params import STAGES, LoopParams, load_params
from loop.pipeline import run

__all__ = ["STAGES", "LoopParams", "load_params", "run"]
