"""MLflow for the loop: one parent run per pipeline configuration, a nested run per stage, and the
``champion`` alias on the adapter's registry version when it beats the current champion."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loop.params import LoopParams
from loop.workdir import Paths
from rag.errors import redact
from rag.settings import Settings

__all__ = ["LoopTracker"]


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = redact(",".join(map(str, v)) if isinstance(v, list) else str(v))[:500]
    return out


class LoopTracker:
    """One parent MLflow run per pipeline configuration; stage runs nest under it.

    The parent's id is kept in ``OUT/.stages/mlflow.json`` with the configuration's hash, so the
    separate processes ``dvc repro`` starts share it, and a changed parameter starts a new parent.
    """

    def __init__(self, params: LoopParams, paths: Paths, fp: str, settings: Settings):
        from finetune.tracking import Tracker, default_tracking_uri

        data_dir = Path(settings.data_dir)
        ml = params.mlflow
        self.uri = ml.tracking_uri or settings.tracking_uri or default_tracking_uri(data_dir)
        self.base = Tracker(self.uri, ml.experiment, data_dir / "mlartifacts")
        self.client = self.base.client
        self.name = ml.registered_model
        self.metric = ml.champion_metric
        state_file = paths.stages / "mlflow.json"
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        self.parent = state.get("parent_run_id") if state.get("hash") == fp else None
        if self.parent:
            try:
                self.client.get_run(self.parent)
            except Exception:  # noqa: BLE001 - the tracking store was replaced: start again
                self.parent = None
        if not self.parent:
            run = self.client.create_run(self.base.experiment_id, run_name=f"loop-{paths.out.name}",
                                         tags={"ragtune.kind": "loop", "ragtune.out": str(paths.out.resolve())})
            self.parent = run.info.run_id
            self.base.run_id = self.parent
            self.base.log_params(_flat({k: v for k, v in params.to_dict().items() if k != "mlflow"}))
            paths.stages.mkdir(parents=True, exist_ok=True)
            state_file.write_text(json.dumps({"hash": fp, "parent_run_id": self.parent}))

    def child(self, stage: str, info: Mapping[str, Any]) -> None:
        run = self.client.create_run(self.base.experiment_id, run_name=stage,
                                     tags={"mlflow.parentRunId": self.parent, "ragtune.kind": f"loop.{stage}"})
        nums = {k: float(v) for k, v in info.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if nums:
            self.base.run_id = run.info.run_id
            self.base.log_metrics(nums, step=0)
        self.client.set_terminated(run.info.run_id)

    def adopt(self, run_id: str) -> None:
        """Nest a run made elsewhere (the qlora recipe's) under the parent."""
        self.client.set_tag(run_id, "mlflow.parentRunId", self.parent)
        self.client.set_tag(self.parent, "ragtune.finetune_run", run_id)

    def finish_eval(self, metrics: Mapping[str, Any], paths: Paths) -> dict[str, Any]:
        """Metrics on the parent and on the adapter's registry version; move ``champion`` if it is better."""
        flat = {f"{side}_{m}": metrics[side][m]["mean"] for side in ("base", "adapter") for m in ("em", "f1")}
        flat.update({f"gain_{m}": metrics["gain"][m]["mean"] for m in ("em", "f1")})
        flat.update({f"gain_{m}_ci_low": metrics["gain"][m]["ci_low"] for m in ("em", "f1")})
        flat["hit_at_5"] = metrics["retrieval"]["hit@5"]["mean"]
        flat = {k: v for k, v in flat.items() if v is not None}
        self.base.run_id = self.parent
        self.base.log_metrics(flat, step=0)
        for f in (paths.metrics, paths.synth_report, paths.split / "split.json"):
            self.client.log_artifact(self.parent, str(f), artifact_path="loop")
        marker = json.loads(paths.marker("finetune").read_text())
        version = (marker.get("mlflow") or {}).get("version")
        result: dict[str, Any] = {"registered": bool(version), "model": self.name, "version": version,
                                  "tracking_uri": redact(self.uri), "parent_run_id": self.parent}
        if not version:
            self.client.set_terminated(self.parent)
            return result
        for key, value in flat.items():
            self.client.set_model_version_tag(self.name, version, f"eval_{key}", str(value))
        self.client.set_model_version_tag(self.name, version, "eval_n", str(metrics["n"]))
        self.client.set_model_version_tag(self.name, version, "generator", metrics["generator"])
        result.update(self._promote(version, metrics["adapter"][self.metric]["mean"]))
        self.client.set_tag(self.parent, "ragtune.model_version", f"{self.name}/{version}")
        self.client.set_terminated(self.parent)
        return result

    def _promote(self, version: str, score: float) -> dict[str, Any]:
        """Move ``champion`` to ``version`` unless the current champion scored higher."""
        current, current_score = None, None
        with contextlib.suppress(Exception):  # no champion yet
            mv = self.client.get_model_version_by_alias(self.name, "champion")
            current = str(mv.version)
            current_score = float(mv.tags.get(f"eval_adapter_{self.metric}", "nan"))
        # a champion without a score (or NaN) loses to any scored version
        promote = current is None or current == version or math.isnan(current_score) or score > current_score
        if promote:
            self.client.set_registered_model_alias(self.name, "champion", version)
        return {"champion": version if promote else current, "promoted": promote, "previous_champion": current,
                "previous_score": current_score, "score": score, "metric": f"adapter {self.metric}"}
