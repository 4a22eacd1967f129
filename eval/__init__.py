"""Evaluation: reference sets, metrics, the harness that runs configurations, and reports.

``python -m eval DATASET.jsonl ...`` is the command line (see ``eval/__main__.py``); the parts
are importable on their own:

- :mod:`eval.dataset` -- load and validate a reference JSONL file.
- :mod:`eval.metrics` -- answer metrics (EM, F1, ROUGE-L), retrieval metrics (hit@k, MRR,
  recall@k), answer recall, lexical groundedness, bootstrap confidence intervals.
- :mod:`eval.harness` -- run each configuration (LLM x retrieval mode) over a dataset.
- :mod:`eval.report` -- console table, ``summary.json``, ``rows.jsonl``, ``report.md``, plots.
"""

__all__ = ["dataset", "harness", "metrics", "report"]
