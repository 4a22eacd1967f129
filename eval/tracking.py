"""MLflow logging of an evaluation: one run per configuration, in the experiment ``ragtune-eval``.

Used with ``--track`` or when ``tracking_uri`` is set. The default store is SQLite under the data
directory (``sqlite:///DATA_DIR/mlflow.db``; MLflow 3 refuses plain file stores), the same one
``finetune`` and the adapter registry use.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.harness import ConfigResult
from rag.errors import MissingDependencyError

EXPERIMENT = "ragtune-eval"


def tracking_uri(settings: Any) -> str:
    if settings.tracking_uri:
        return settings.tracking_uri
    data_dir = Path(settings.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'mlflow.db'}"


def _key(name: str) -> str:
    # MLflow metric names allow alphanumerics, _ - . space / ; '@' is not accepted everywhere.
    return re.sub(r"[^\w\-. /]", "_", name.replace("@", "_at_"))


def log_results(results: Sequence[ConfigResult], settings: Any, *, dataset: str, out: str | Path | None = None,
                experiment: str = EXPERIMENT) -> list[str]:
    """Log params, metrics and CI bounds (and ``out``'s files as artifacts); returns the run ids."""
    try:
        import mlflow
    except ModuleNotFoundError as e:
        raise MissingDependencyError("experiment tracking (--track)", "eval", "mlflow") from e
    uri = tracking_uri(settings)
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:") and mlflow.get_experiment_by_name(experiment) is None:
        # Without an artifact location MLflow writes artifacts to ./mlruns in the current directory.
        where = Path(settings.data_dir).resolve() / "mlartifacts"
        mlflow.create_experiment(experiment, artifact_location=where.as_uri())
    mlflow.set_experiment(experiment)
    ids = []
    for r in results:
        with mlflow.start_run(run_name=r.config.name) as run:
            mlflow.log_params({"dataset": dataset, "llm": "none" if r.config.llm is None else (r.config.llm or "default"),
                               "retrieval": r.config.retrieval, "k": r.config.k, "n": r.n,
                               "embedder": settings.embedder, "store": _redacted(settings.store_uri)})
            vals = {_key(k): float(v) for k, v in r.metrics.items() if v is not None}
            for k, ci in r.ci.items():
                if ci:
                    vals[_key(k) + "_ci_lo"], vals[_key(k) + "_ci_hi"] = float(ci[0]), float(ci[1])
            mlflow.log_metrics(vals)
            if out is not None and Path(out).is_dir():
                mlflow.log_artifacts(str(out), artifact_path="eval")
            ids.append(run.info.run_id)
    return ids


def _redacted(uri: str) -> str:
    from rag.errors import redact

    return redact(uri)
