"""``python -m eval ... --engine ray``: the reference questions fanned out over a Ray cluster.

Each Ray task (one per node by default) takes a contiguous shard of the questions and runs the unchanged harness on it
(retrieval and generation on that worker, with its own model loads); the driver puts the
per-question rows back in their order and aggregates them as the local run does, so the metrics
are the same (same rows -> same means; same seed -> same bootstrap intervals). A task lost with
its node is retried by Ray.

Every worker must reach the store: a server store (pgvector, Milvus), or an embedded store on a
folder all nodes share (one machine, NFS).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eval.harness import ConfigResult, EvalConfig, _add_judge_summary, aggregate
from rag.errors import ConfigError, MissingDependencyError
from rag.stores import local_path, scheme_of

# The folder holding the packages, put on the workers' path so a checkout works without an install.
_ROOT = str(Path(__file__).resolve().parents[1])


def _run_shard(examples, configs, settings, judge):
    from eval import harness

    # n_boot=1: the shard's own intervals are thrown away; the driver bootstraps over all rows.
    return harness.evaluate(examples, configs, settings, judge=judge, n_boot=1, seed=0, log=lambda s: None)


def _absolute(settings):
    """Workers do not run in this process's folder: make local paths absolute."""
    update: dict[str, Any] = {"data_dir": Path(settings.data_dir).expanduser().resolve()}
    if settings.store and scheme_of(settings.store) == "file":
        update["store"] = str(local_path(settings.store).resolve())
    return settings.model_copy(update=update)


def evaluate(examples: Sequence[Any], configs: Sequence[EvalConfig], settings: Any, *, address: str | None = None,
             shards: int | None = None, judge: str | None = None, n_boot: int = 1000, seed: int = 0,
             log: Callable[[str], None] | None = None) -> list[ConfigResult]:
    """``eval.harness.evaluate`` over a Ray cluster: ``shards`` tasks (default: one per node).

    Raises:
        MissingDependencyError: Ray is not installed.
        ConfigError: the cluster at ``address`` cannot be reached.
    """
    try:
        import ray
    except ModuleNotFoundError as e:
        raise MissingDependencyError("--engine ray needs Ray: pip install 'ragtune[ray]'") from e
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    examples = list(examples)
    connected = False
    if not ray.is_initialized():
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")])),
               "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "TOKENIZERS_PARALLELISM": "false"}
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                     runtime_env={"env_vars": env})
        except ConnectionError as e:
            raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {e}") from e
        connected = True
    t0 = time.perf_counter()
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        # One shard per node by default: each shard loads the LLM and the embedder once.
        n = max(1, min(len(examples), shards or nodes))
        size = -(-len(examples) // n)
        parts = [examples[i:i + size] for i in range(0, len(examples), size)] or [[]]
        log(f"eval on Ray: {len(examples)} questions in {len(parts)} shard(s) over {cpus} CPU(s)")
        task = ray.remote(num_cpus=1, max_retries=3)(_run_shard)
        outs = ray.get([task.remote(p, list(configs), _absolute(settings), judge) for p in parts])
    finally:
        if connected:
            ray.shutdown()
    seconds = time.perf_counter() - t0
    results = []
    for i, config in enumerate(configs):
        rows = [row for out in outs for row in out[i].rows]
        warnings = list(dict.fromkeys(w for out in outs for w in out[i].warnings))
        metrics, ci = aggregate(rows, n_boot=n_boot, seed=seed)
        if config.full and judge:
            _add_judge_summary(rows, metrics, ci)
        results.append(ConfigResult(config, rows, metrics, ci, seconds, warnings))
        log(f"[{config.name}] done in {seconds:.1f}s on Ray")
    return results
