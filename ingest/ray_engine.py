"""``--engine ray``: the same incremental ingest with parse, split and embed fanned out over Ray.

The driver (this process) keeps what must happen in one place: walking the paths, diffing them
against the manifest (skip / replace / remove, exactly as ``--engine local``), and writing each
file's chunks with the manifest's pending -> store -> done order. Only the heavy middle runs on
the cluster, as one Ray Data pipeline:

    file list --(tasks: parse + split, one file each)--> --(actor pool: refit + embed)--> driver

- Parse tasks reuse ``ingest.worker.ParseWorker``: the file is parsed in a child process of the
  Ray task, so a per-file timeout and a crashing parser fail that file alone, and the Ray worker
  survives to take the next file. A node that dies takes its tasks with it; Ray retries them.
- Embed actors load the model once each (``num_gpus=1`` when the cluster has GPUs), re-split
  pieces over the model's token limit (like ``pipeline._refit``) and embed all chunks of a batch
  of files in one call.
- Chunk ids and text come from the same functions as the local path, so both engines produce the
  same ids; vectors differ only by batch composition (float rounding).

Ray is imported only here, when ``engine="ray"`` is asked for.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from ingest.pipeline import Ingestor, IngestResult, _refit
from ingest.sources import origin_url
from rag.embedders.runtime import check_runtime
from rag.errors import ConfigError, MissingDependencyError
from rag.settings import Settings
from rag.stores import check_info
from rag.types import Document

ENGINES = ("local", "ray")
FILES_PER_EMBED_BATCH = 8  # files whose chunks go to one embed call (encode sorts by length within a call)
# Reserved per embed actor: the model plus a batch. Being different from the parse tasks' needs
# also keeps Ray Data from fusing parse into the actors (parsing must stay in retryable tasks).
EMBED_ACTOR_MEMORY = 2 << 30  # MiniLM + a batch measured ~1.05 GiB RSS
# The folder holding the ``ingest`` package: put on the workers' path so a checkout works without an
# install; on a real cluster ragtune is installed on every node and this path is simply absent there.
_ROOT = str(Path(__file__).resolve().parents[1])


@dataclass
class RayIngestResult(IngestResult):
    """``IngestResult`` plus where the work ran: ``nodes`` lists files parsed and chunks embedded per node."""

    nodes: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), "nodes": self.nodes}


def check_engine(engine: str) -> str:
    if engine not in ENGINES:
        raise ConfigError(f"unknown ingest engine {engine!r} (known: {', '.join(ENGINES)})")
    return engine


def connect(address: str | None) -> bool:
    """Connect to the cluster at ``address`` (None: ``RAY_ADDRESS`` or a fresh local Ray).

    Returns whether this call connected (and so should disconnect after)."""
    try:
        import ray
    except ModuleNotFoundError as e:
        raise MissingDependencyError("--engine ray needs Ray Data: pip install 'ragtune[ray]'") from e
    if ray.is_initialized():
        return False
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")])),
           "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"), "TOKENIZERS_PARALLELISM": "false"}
    try:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                 runtime_env={"env_vars": env}, include_dashboard=False if address is None else None)
    except ConnectionError as e:
        raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {e} (start one with "
                          "`ray start --head`, or leave --ray-address out for a local Ray)") from e
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False   # our own files/chunks bar goes to stderr instead
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return True


# -- on the cluster -----------------------------------------------------------------------------
_PARSER = None  # one parse process per Ray worker process, kept across the tasks it runs


def _objects(items: list) -> np.ndarray:
    """A 1-D object column: Ray Data carries the Python objects (documents, chunks, vectors) between
    tasks itself; filled item by item so numpy never turns a list of tuples into a 2-D array."""
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        out[i] = item
    return out


def _parse_batch(batch: dict[str, np.ndarray], settings) -> dict[str, np.ndarray]:
    """Ray task: parse and split each file in a ``ParseWorker`` child (timeout + crash isolation)."""
    import ray

    from ingest.sources import fetch
    from ingest.worker import ParseWorker, WorkerStartError, parse_file

    global _PARSER
    node = ray.get_runtime_context().get_node_id()
    status, payload = [], []
    for path, url in zip(batch["path"], batch["url"]):
        if _PARSER is None:
            _PARSER = ParseWorker()
        with tempfile.TemporaryDirectory(prefix="ragtune-fetch-") as tmp:
            try:
                # A node without the driver's mirror of a URL source reads the object itself.
                local = str(path) if (not url or os.path.exists(path)) else fetch(str(url), tmp)
                _PARSER.submit(parse_file, local, settings)
                outcome = _PARSER.result(time.monotonic(), settings.file_timeout_s)
            except WorkerStartError as e:  # not the file's fault: reported, retried next run
                outcome = ("transient", str(e))
            except OSError as e:
                outcome = ("transient", f"cannot fetch {url}: {e}")
        status.append(outcome[0])
        payload.append(outcome[1])
    n = len(status)
    return {"path": batch["path"], "status": np.array(status, dtype=object),
            "payload": _objects(payload), "parse_node": np.array([node] * n, dtype=object)}


class _Embedder:
    """Ray actor: one embedding model, loaded once; embeds the chunks of a batch of parsed files."""

    def __init__(self, settings: Settings):
        import ray

        self.emb = _open_model(settings)
        self.settings = settings.ingest
        self.node = ray.get_runtime_context().get_node_id()
        self.model = json.dumps({"id": self.emb.id, "dim": self.emb.dim, "max_tokens": self.emb.max_tokens,
                                 "runtime": dict(getattr(self.emb, "runtime", None) or {})})

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        parsed, texts = [], []
        for status, raw in zip(batch["status"], batch["payload"]):
            if status != "ok":
                parsed.append(None)
                continue
            doc, pieces = raw
            pieces = _refit(pieces, doc, self.settings, self.emb)
            parsed.append((doc, pieces, len(texts)))
            texts += [p.text for p in pieces]
        vectors = self.emb.embed(texts) if texts else np.zeros((0, self.emb.dim), dtype=np.float32)
        out = []
        for (status, raw), item in zip(zip(batch["status"], batch["payload"]), parsed):
            if item is None:
                out.append(raw)
                continue
            doc, pieces, start = item
            light = Document(doc.source, [], {**doc.metadata, "pages": doc.metadata.get("pages", len(doc.pages))},
                             list(doc.warnings))
            out.append((light, pieces, vectors[start:start + len(pieces)]))
        n = len(out)
        return {"path": batch["path"], "status": batch["status"], "payload": _objects(out),
                "parse_node": batch["parse_node"], "embed_node": np.array([self.node] * n, dtype=object),
                "model": np.array([self.model] * n, dtype=object)}


def _open_model(settings: Settings):
    """The embedder the settings name, built like the local path's but without its cache (the
    cache is a file under the driver's data dir, which other nodes do not have)."""
    from rag import embedders

    opener = getattr(embedders, "open_configured", None)
    if opener is None:
        return embedders.open_embedder(settings.embedder, device=settings.device,
                                       precision=settings.embedder_precision)
    with tempfile.TemporaryDirectory(prefix="ragtune-actor-") as tmp:
        cached = opener(settings.model_copy(update={"data_dir": Path(tmp)}))
        inner = getattr(cached, "inner", cached)
        if inner is not cached:
            cached.db.close()
    return inner


# -- on the driver ------------------------------------------------------------------------------
class _Precomputed:
    """Stands in for the embedder inside ``Ingestor._store_file``: the vectors were made on the
    cluster, so "embedding" a file's chunks is a lookup (and refit finds nothing over the limit)."""

    def __init__(self, model: str):
        info = json.loads(model)
        self.id, self.dim, self.max_tokens, self.runtime = info["id"], info["dim"], info["max_tokens"], info["runtime"]
        self._vectors: dict[str, np.ndarray] = {}

    def load(self, texts: list[str], vectors: np.ndarray) -> None:
        self._vectors = dict(zip(texts, vectors))

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.stack([self._vectors[t] for t in texts])

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [0] * len(texts)

    def close(self) -> None:
        pass


class RayIngestor(Ingestor):
    """``Ingestor`` whose parse/split/embed stage runs on a Ray cluster (see the module docstring)."""

    def __init__(self, settings: Settings, store, *, address: str | None = None, progress: bool | None = None,
                 log=None, **kw: Any):
        super().__init__(settings, store, lambda: None, progress=progress, log=log, **kw)
        self.address = address
        self.node_counts: dict[str, Counter] = {}
        self.nodes: list[dict[str, Any]] = []

    def run(self, paths, *, on_file=None, retry_failed: bool = False) -> RayIngestResult:
        res = super().run(paths, on_file=on_file, retry_failed=retry_failed)
        out = RayIngestResult(**{f.name: getattr(res, f.name) for f in fields(IngestResult)})
        out.nodes = self.nodes
        return out

    def _node_list(self) -> list[dict[str, Any]]:
        import ray

        addr = {n["NodeID"]: n.get("NodeManagerAddress", "") for n in ray.nodes()}
        return [{"node_id": node, "address": addr.get(node, ""), "files": c["files"], "chunks": c["chunks"]}
                for node, c in sorted(self.node_counts.items())]

    def _plan(self, paths: list[str]):
        import ray

        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0))
        alive = [n for n in ray.nodes() if n.get("Alive")]
        s = self.settings
        if gpus:
            actors, remote = gpus, {"num_gpus": 1}
            device = s.device if s.device not in ("cpu", "auto") else "cuda"
        else:
            # One CPU actor per node (capped by the work): the rest of each node parses.
            actors, remote, device = max(1, min(len(alive), len(paths))), {"num_cpus": 1}, "cpu"
        remote["memory"] = EMBED_ACTOR_MEMORY
        items = [{"path": p, "url": origin_url(p, self.origins) or ""} for p in paths]
        ds = ray.data.from_items(items, override_num_blocks=len(paths))
        ds = ds.map_batches(_parse_batch, batch_size=1, fn_kwargs={"settings": s.ingest}, num_cpus=1)
        return ds.map_batches(_Embedder, batch_size=FILES_PER_EMBED_BATCH,
                              # min_size 1: a pool that loses a node's actor goes on with the others
                              # (a fixed size waits for a replacement the smaller cluster may not fit).
                              compute=ray.data.ActorPoolStrategy(min_size=1, max_size=min(actors, len(paths))),
                              fn_constructor_kwargs={"settings": s.model_copy(update={"device": device})},
                              **remote)

    def _process(self, work, fp: str, result: IngestResult, on_file) -> None:
        import ray

        from ingest.manifests import claim_work

        work = claim_work(self, work, fp, result, on_file)
        if not work:
            return
        connected = connect(self.address)
        bar = self._bar(len(work), "ingest (ray)")
        # Absolute: Ray workers do not run in this process's current folder.
        by_path = {os.path.abspath(p): (p, src, old, st) for p, src, old, _, st in work}
        t0 = time.perf_counter()
        try:
            for row in self._plan(list(by_path)).iter_rows():
                self._take(row, by_path, fp, result, on_file)
                if bar is not None:
                    dt = max(1e-9, time.perf_counter() - t0)
                    bar.set_postfix(files_s=f"{bar.n / dt:.1f}", chunks_s=f"{result.chunks / dt:.0f}", refresh=False)
                    bar.update(1)
        finally:
            self._end_run(bar)
            try:
                self.nodes = self._node_list()
            finally:
                if connected:
                    ray.shutdown()

    def _take(self, row: dict[str, Any], by_path, fp: str, result: IngestResult, on_file) -> None:
        path, source, old, st = by_path[row["path"]]
        real = str(path.resolve())
        counts = self.node_counts.setdefault(row["parse_node"], Counter())
        counts["files"] += 1
        if row["status"] != "ok":
            reason = row["payload"]
            self._fail(result, path, source, reason, on_file)
            if row["status"] == "error":  # the file's own fault ("transient": touch nothing, retry)
                if old is not None and old.status != "failed":
                    self.store.delete_source(old.source, self.collection)
                self._remember_failure(path, real, source, st, reason)
            return
        doc, pieces, vectors = row["payload"]
        emb = self._embedder
        if emb is None:
            emb = self._embedder = _Precomputed(row["model"])
            check_info(self.store, {"embedder": emb.id, "dim": emb.dim})
            check_runtime(self.store.get_info(), emb, self.store.uri)
        emb.load([p.text for p in pieces], vectors)
        n = self._store_file(path, real, source, doc, pieces, fp, st, old)
        self.embedded += n
        self.node_counts.setdefault(row["embed_node"], Counter())["chunks"] += n
        self._stored(result, real, source, doc, n, old, on_file)
