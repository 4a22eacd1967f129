"""A real local Ray cluster for the tests: a head node and a second worker node on 127.0.0.1.

Started once per session (``ray start --head --num-cpus 2 --include-dashboard false`` plus a
``ray start --address`` worker with 2 CPUs, each ``--block``ed in its own process group under a
private temp dir) and stopped at the end. Tests get a ``RayCluster``: its ``address`` is what
``--ray-address`` takes; ``kill_worker()`` kill -9s the worker node, ``add_worker()`` brings one
back. Skips (with the reason) when Ray is not installed or the cluster cannot start.

Note: Ray's gRPC servers listen on all interfaces (Ray has no bind-to-loopback switch); the nodes
advertise 127.0.0.1 and nothing here talks to any other address.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = 120.0  # two raylets and a GCS on a busy 2-core box


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayCluster:
    def __init__(self) -> None:
        # Short: Ray's unix socket paths live under it (108-byte limit).
        self.tmp = Path(tempfile.mkdtemp(prefix="rt-ray-", dir="/tmp"))
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.head: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self._n = 0
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1",
                    "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        self.env.pop("RAY_ADDRESS", None)

    def _ray(self, *args: str, log: str) -> subprocess.Popen:
        ray = Path(sys.executable).with_name("ray")
        out = open(self.tmp / log, "wb")  # noqa: SIM115 - closed with the process
        return subprocess.Popen([str(ray), "start", *args, "--node-ip-address", "127.0.0.1", "--block",
                                 "--disable-usage-stats"], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=self.env, cwd=self.tmp, start_new_session=True)

    def start(self) -> None:
        self.head = self._ray("--head", "--num-cpus", "2", "--port", str(self.port), "--include-dashboard", "false",
                              "--dashboard-port", str(_free_port()),
                              "--dashboard-agent-listen-port", str(_free_port()), "--temp-dir", str(self.tmp / "t"),
                              log="head.log")
        self._wait_started(self.head, "head.log")
        self.add_worker()
        if len(self.alive_nodes()) != 2:
            raise RuntimeError(f"expected 2 live Ray nodes: {self.log_tail()}")

    def add_worker(self) -> None:
        self._n += 1
        log = f"worker{self._n}.log"
        self.worker = self._ray("--address", self.address, "--num-cpus", "2",
                                "--dashboard-agent-listen-port", str(_free_port()), log=log)
        self._wait_started(self.worker, log)

    def kill_worker(self) -> None:
        """kill -9 the worker node: its raylet, object store and agents (its task workers exit with it)."""
        if self.worker is not None:
            _killpg(self.worker, signal.SIGKILL)
            self.worker.wait(timeout=30)
            self.worker = None

    def worker_running(self, what: str) -> bool:
        """Whether a Ray task or actor whose name holds ``what`` runs on the worker node right now."""
        if self.worker is None:
            return False
        pids = ",".join(map(str, _descendants(self.worker.pid)))
        names = subprocess.run(["ps", "-o", "args=", "-p", pids], capture_output=True, text=True,
                               check=False).stdout.splitlines()
        return any(n.startswith("ray::") and what in n for n in names)

    def alive_nodes(self) -> list[dict]:
        code = ("import json, ray, logging; ray.init(address=" + repr(self.address) + ", logging_level=logging.ERROR, "
                "log_to_driver=False); print(json.dumps([n['NodeID'] for n in ray.nodes() if n['Alive']]))")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=self.env, timeout=120,
                             check=False)
        if run.returncode != 0:
            return []
        import json

        return json.loads(run.stdout.strip().splitlines()[-1])

    def _wait_started(self, proc: subprocess.Popen, log: str) -> None:
        """Until ``ray start`` says its node is up (it prints that once the node has registered)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while b"Ray runtime started" not in (self.tmp / log).read_bytes():
            if proc.poll() is not None:
                raise RuntimeError(f"ray start exited with {proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"ray start did not finish in {START_TIMEOUT_S:g} s: {self.log_tail()}")
            time.sleep(0.2)

    def log_tail(self) -> str:
        return " | ".join(p.read_text(errors="replace")[-400:] for p in sorted(self.tmp.glob("*.log")))

    def stop(self) -> None:
        self.kill_worker()
        if self.head is not None and self.head.poll() is None:
            _killpg(self.head, signal.SIGTERM)  # `ray start --block` stops its node's processes on SIGTERM
            try:
                self.head.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            _killpg(self.head, signal.SIGKILL)  # whatever of the group is left
            self.head.wait(timeout=30)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _killpg(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,ppid"], capture_output=True, text=True, check=False).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines()[1:]:
        c, p = map(int, line.split())
        children.setdefault(p, []).append(c)
    todo, seen = [pid], []
    while todo:
        cur = todo.pop()
        seen.append(cur)
        todo += children.get(cur, [])
    return seen


@pytest.fixture(scope="session")
def ray_cluster():
    """One two-node Ray cluster on 127.0.0.1 for the whole session (see the module docstring)."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("Ray tests need Ray Data: pip install 'ragtune[ray]'")
    cluster = RayCluster()
    try:
        cluster.start()
    except (RuntimeError, OSError) as e:
        cluster.stop()
        pytest.skip(f"could not start a local Ray cluster: {e}")
    yield cluster
    cluster.stop()


# -- pgvector, as tests/contract/conftest.py reaches it ------------------------------------------
PG_PORT = os.environ.get("RAGTUNE_PG_PORT", "54329")


@pytest.fixture
def pg_table():
    import importlib.util
    import uuid

    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("pgvector tests need psycopg + pgvector: pip install 'ragtune[pgvector]'")
    import psycopg

    try:
        psycopg.connect(host="127.0.0.1", port=int(PG_PORT), user="postgres", dbname="ragtune", connect_timeout=2).close()
    except psycopg.OperationalError:
        run = subprocess.run(["bash", str(REPO / "scripts" / "pg.sh"), "start"], capture_output=True, text=True,
                             timeout=120, check=False)
        if run.returncode != 0:
            pytest.skip(f"no PostgreSQL at 127.0.0.1:{PG_PORT} and scripts/pg.sh start failed: {run.stderr[-300:]}")
    uri = f"pgvector://postgres@127.0.0.1:{PG_PORT}/ragtune?table=t_{uuid.uuid4().hex[:10]}"
    yield uri
    from rag.stores.pgvector import PgVectorStore

    s = PgVectorStore(uri)
    s.drop()
    s.close()
    with psycopg.connect(host="127.0.0.1", port=int(PG_PORT), user="postgres", dbname="ragtune",
                         autocommit=True) as conn:  # the shared ingest manifest beside the chunks
        conn.execute(f"DROP TABLE IF EXISTS {uri.rsplit('=', 1)[1]}_manifest")
