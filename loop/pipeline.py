"""Run the stages in order, skipping those finished with the same inputs and parameters."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from loop.params import LoopParams, stage_order
from loop.stages import Context, evaluate, ingest, split, synthesise, teach, train
from loop.workdir import Paths, fingerprints, is_done, log, mark_done
from rag.errors import ConfigError
from rag.settings import Settings

__all__ = ["RUNNERS", "run"]

RUNNERS = {"ingest": ingest.run, "synthesise": synthesise.run, "split": split.run, "teach": teach.run,
           "finetune": train.run, "eval": evaluate.run}


def run(params: LoopParams, settings: Settings, *, only: str | None = None, force: bool = False) -> dict[str, Any]:
    """Run the stages in order (or ``only`` one), skipping those whose marker hash still matches.

    Args:
        params: from :func:`loop.params.load_params`.
        settings: what every stage uses (data dir, LLM, tracking URI).
        only: run this stage alone; the stages before it must be finished with these parameters.
        force: run even the stages whose markers match.

    Returns:
        ``{"out", "stages": {name: "ran" | "skipped"}, "metrics"}``.

    Raises:
        ConfigError: ``only`` needs stages that are not finished, or DOCS is missing.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    paths = Paths(params.out)
    paths.out.mkdir(parents=True, exist_ok=True)
    fps = fingerprints(params)
    order = stage_order(params)
    if only and only not in order:  # `--stage teach` without a teacher (dvc.yaml lists it): empty outputs
        teach.write_off(paths)
        return {"out": str(paths.out), "stages": {only: "off"}, "metrics": None}
    todo = [only] if only else list(order)
    if only:
        missing = [s for s in order[: order.index(only)] if not is_done(paths, s, fps[s])]
        if missing:
            raise ConfigError(f"stage {only!r} needs {', '.join(missing)} first (finished with these parameters): "
                              f"python -m loop --stage {missing[0]} ...")
    status: dict[str, str] = {}
    ctx = Context(settings)
    stale = False
    for stage in todo:
        if not force and not stale and is_done(paths, stage, fps[stage]):
            status[stage] = "skipped"
            log(f"{stage}: up to date, skipped")
            continue
        stale = True  # a stage that runs makes every later one run too
        if params.mlflow.enabled and ctx.tracker is None:
            from loop.tracking import LoopTracker

            ctx.tracker = LoopTracker(params, paths, fps["eval"], settings)
        paths.marker(stage).unlink(missing_ok=True)
        log(f"{stage}: running")
        t0 = time.perf_counter()
        info = RUNNERS[stage](params, paths, ctx)
        seconds = time.perf_counter() - t0
        mark_done(paths, stage, fps[stage], seconds, info)
        if ctx.tracker and stage != "finetune":
            ctx.tracker.child(stage, {**info, "seconds": seconds})
        log(f"{stage}: done in {seconds:.1f} s {json.dumps(info, default=str)}")
        status[stage] = "ran"
    metrics = json.loads(paths.metrics.read_text()) if paths.metrics.exists() else None
    return {"out": str(paths.out), "stages": status, "metrics": metrics}
