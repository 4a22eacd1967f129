"""Ingest of ../shared/data/pdfs: ``--engine local`` vs ``--engine ray`` on a 1-node and a 2-node local cluster.

    python -m bench.ray_bench                          # table on stdout, bench/results/ray.json
    python -m bench.ray_bench --rounds 2 --corpus DIR

Every run is a cold ``python -m ingest CORPUS --json`` in a fresh data dir, timed as subprocess wall
time (interpreter start, imports, model load(s), parse, embed, store). The Ray clusters are started
before the timer (``ray start --head --num-cpus 2`` on 127.0.0.1, plus a worker node with 2 CPUs for
"2 nodes": on this one 2-core box the second node adds processes, not cores). The ratio is Ray's
seconds over local's; the issue's target is <= 1.3 on one node. Configurations are interleaved per
round and the median is kept.

It also measures the per-worker figures docs/scale.md extrapolates from: parse pages/s of one
process on one core, and embed chunks/s of one embedder on one thread (a 1-CPU Ray actor's share).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PDFS = ROOT.parent / "shared" / "data" / "pdfs"
OUT = ROOT / "bench" / "results" / "ray.json"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """``ray start --block`` nodes in their own process groups under a private temp dir."""

    def __init__(self, nodes: int, env: dict):
        self.tmp = Path(tempfile.mkdtemp(prefix="rt-bench-", dir="/tmp"))
        self.address = f"127.0.0.1:{_port()}"
        self.env, self.procs = env, []
        ray = str(Path(sys.executable).with_name("ray"))
        for i in range(nodes):
            args = (["--head", "--port", self.address.split(":")[1], "--include-dashboard", "false",
                     "--dashboard-port", str(_port()), "--temp-dir", str(self.tmp / "t")] if i == 0 else ["--address", self.address])
            log = self.tmp / f"node{i}.log"
            proc = subprocess.Popen([ray, "start", *args, "--num-cpus", "2", "--node-ip-address", "127.0.0.1",
                                     "--dashboard-agent-listen-port", str(_port()), "--disable-usage-stats", "--block"],
                                    stdout=open(log, "wb"), stderr=subprocess.STDOUT, env=env,  # noqa: SIM115
                                    start_new_session=True)
            self.procs.append(proc)
            deadline = time.monotonic() + 180
            while b"Ray runtime started" not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"ray node {i} did not start: {log.read_text()[-800:]}")
                time.sleep(0.2)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 30)):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=wait)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue
        shutil.rmtree(self.tmp, ignore_errors=True)


def ingest(corpus: Path, data_dir: Path, env: dict, *extra: str) -> dict:
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "ingest", str(corpus), "--data-dir", str(data_dir), "--json", *extra],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=3600, check=False)
    seconds = time.perf_counter() - t0
    if run.returncode != 0:
        raise RuntimeError(f"ingest {' '.join(extra)} failed: {run.stderr[-1500:]}")
    out = json.loads(run.stdout.strip().splitlines()[-1])
    return {"seconds": seconds, "added": out["added"], "chunks": out["chunks"], "failed": len(out["failed"]),
            "nodes": len(out.get("nodes", [])) or None}


def per_worker_figures(corpus: Path) -> dict:
    """Parse pages/s on one process and embed chunks/s on one thread (what one 1-CPU actor does)."""
    import torch

    from ingest.pipeline import walk
    from ingest.worker import parse_file
    from rag.embedders import open_embedder
    from rag.settings import load_settings

    torch.set_num_threads(1)
    settings = load_settings(None).ingest
    pages, texts, t0 = 0, [], time.perf_counter()
    for path, _ in walk([corpus]):
        status, payload = parse_file(str(path), settings)
        if status == "ok":
            doc, pieces = payload
            pages += len(doc.pages)
            texts += [p.text for p in pieces]
    parse_s = time.perf_counter() - t0
    emb = open_embedder(load_settings(None).embedder)
    sample = texts[:512]
    emb.embed(sample[:32])  # warm-up
    t0 = time.perf_counter()
    emb.embed(sample)
    embed_s = time.perf_counter() - t0
    return {"pages": pages, "parse_pages_per_s_1cpu": pages / parse_s, "chunks_per_page": len(texts) / max(1, pages),
            "embed_chunks_per_s_1thread": len(sample) / embed_s, "embed_sample": len(sample)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ray_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=PDFS)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--out", type=Path, default=OUT)
    a = p.parse_args(argv)
    if not a.corpus.is_dir():
        print(f"error: corpus not found: {a.corpus}", file=sys.stderr)
        return 1
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    runs: dict[str, list[dict]] = {"local": [], "ray 1 node": [], "ray 2 nodes": []}
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        for r in range(a.rounds):
            for name, done in runs.items():
                data = Path(tmp) / f"{name.replace(' ', '-')}-{r}"
                if name == "local":
                    done.append(ingest(a.corpus, data, env))
                else:
                    cluster = Cluster(1 if "1 node" in name else 2, env)
                    try:
                        done.append(ingest(a.corpus, data, env, "--engine", "ray", "--ray-address", cluster.address))
                    finally:
                        cluster.stop()
                print(f"round {r + 1} {name}: {done[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    med = {k: statistics.median(x["seconds"] for x in v) for k, v in runs.items()}
    result = {"corpus": str(a.corpus), "rounds": a.rounds, "cpu_count": os.cpu_count(), "runs": runs,
              "median_seconds": med,
              "ratio_vs_local": {k: v / med["local"] for k, v in med.items() if k != "local"},
              "per_worker": per_worker_figures(a.corpus)}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print("| engine | seconds (median) | x local | chunks | failed |\n| --- | --- | --- | --- | --- |")
    for k, v in runs.items():
        print(f"| {k} | {med[k]:.1f} | {med[k] / med['local']:.2f} | {v[-1]['chunks']} | {v[-1]['failed']} |")
    print(json.dumps(result["per_worker"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
