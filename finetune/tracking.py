"""MLflow tracking for fine-tuning runs: sqlite store under the data directory, adapter registry.

MLflow 3 refuses a plain ``file:`` store, so the default is ``sqlite:///DATA_DIR/mlflow.db`` with
artifacts in ``DATA_DIR/mlartifacts`` (not ``./mlruns`` in whatever folder you ran from).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rag.errors import MissingDependencyError, redact

__all__ = ["Tracker", "default_tracking_uri"]

_SECRET_WORDS = ("key", "token", "secret", "password")


def default_tracking_uri(data_dir: str | Path) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / 'mlflow.db'}"


def _quiet() -> None:
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking", "mlflow.store"):
        logging.getLogger(name).setLevel(logging.WARNING)


def flat_params(config: Mapping[str, Any]) -> dict[str, str]:
    """Config as MLflow params: strings of <= 500 chars, URIs redacted, secret-looking keys dropped."""
    out = {}
    for k, v in config.items():
        if any(w in k.lower() for w in _SECRET_WORDS):
            continue
        s = ",".join(map(str, v)) if isinstance(v, list) else str(v)
        out[k] = redact(s)[:500]
    return out


class Tracker:
    """One MLflow run: params, per-step metrics, the adapter as an artifact, a registry version."""

    def __init__(self, tracking_uri: str, experiment: str, artifact_root: str | Path):
        try:
            import mlflow  # noqa: F401
            from mlflow import MlflowClient
        except ImportError as e:
            raise MissingDependencyError("MLflow tracking", "finetune", "mlflow") from e
        _quiet()
        self.uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        exp = self.client.get_experiment_by_name(experiment)
        if exp is None:
            root = Path(artifact_root).resolve()
            root.mkdir(parents=True, exist_ok=True)
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=root.as_uri())
        else:
            self.experiment_id = exp.experiment_id
        self.run_id: str | None = None

    def start(self, run_name: str, resume_run_id: str | None = None) -> str:
        if resume_run_id:
            try:
                self.client.get_run(resume_run_id)
                self.client.update_run(resume_run_id, status="RUNNING")
                self.run_id = resume_run_id
                return resume_run_id
            except Exception as e:  # noqa: BLE001 - the old run is gone: start a new one
                logging.getLogger(__name__).warning("cannot resume MLflow run %s (%s): starting a new run",
                                                    resume_run_id, e)
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={"ragtune.kind": "finetune"})
        self.run_id = run.info.run_id
        return self.run_id

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        existing = self.client.get_run(self.run_id).data.params
        new = [Param(k, str(v)) for k, v in params.items() if k not in existing]
        for i in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), ts, step) for k, v in metrics.items()])

    def log_adapter(self, folder: str | Path) -> str:
        """Log the adapter's own files (not checkpoints/ or data/) under ``adapter/``; returns its URI."""
        for f in sorted(Path(folder).iterdir()):
            if f.is_file():
                self.client.log_artifact(self.run_id, str(f), artifact_path="adapter")
        return f"{self.client.get_run(self.run_id).info.artifact_uri}/adapter"

    def register(self, name: str, source: str, tags: Mapping[str, Any]) -> str:
        """A new version of registered model ``name`` pointing at the logged adapter folder."""
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name, description="LoRA/QLoRA adapters trained by ragtune")
        except MlflowException as e:
            if "already exists" not in str(e).lower() and "RESOURCE_ALREADY_EXISTS" not in str(e):
                raise
        mv = self.client.create_model_version(name, source=source, run_id=self.run_id,
                                              tags={k: str(v) for k, v in tags.items() if v is not None})
        return str(mv.version)

    def end(self, status: str = "FINISHED") -> None:
        if self.run_id:
            self.client.set_terminated(self.run_id, status=status)
