"""After ``kill -9`` of an ingest, its parser worker, forkserver and resource tracker go too.

Regression: a ProcessPoolExecutor worker blocks on its task queue forever once its parent is
gone (it holds both ends of the queue's pipe), and keeps the forkserver alive with it: every
killed ingest left three processes behind (tests/integration/test_kill_9_mid_ingest_then_complete
left nine per run). The worker now watches the ingest process and exits with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import ingest.pipeline as pipeline
from rag.settings import IngestSettings
from tests.reliability import _helpers
pipeline._parse = _helpers.slow_parse if {busy} else pipeline._parse
paths = [{slow!r}] if {busy} else [{ok!r}] * 3
results = pipeline._Parser(IngestSettings(workers=1, file_timeout_s=600)).run(paths)
print(next(results)[1][0], flush=True)   # busy: never returns; idle: the pool stays up, waiting
import time
time.sleep(600)
"""


def _mentioning(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def _run_and_kill(tmp_path: Path, busy: bool) -> None:
    marker = tmp_path / f"leftovers-{'busy' if busy else 'idle'}"   # in every child's sys.path (cwd)
    marker.mkdir()
    (marker / "ok.txt").write_text("A short file.\n")
    code = SCRIPT.format(root=str(ROOT), busy=busy, slow=str(marker / "a_slow.txt"), ok=str(marker / "ok.txt"))
    (marker / "a_slow.txt").write_text("hangs\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=marker, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        if not busy:
            assert proc.stdout.readline().strip() == b"ok"
        while len(_mentioning(str(marker))) < 3:    # this script, the forkserver and its worker
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 20
    while (left := _mentioning(str(marker))) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:   # do not leave them behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert left == [], "processes left behind by a killed ingest"


def test_busy_worker_exits_after_kill_9(tmp_path):
    _run_and_kill(tmp_path, busy=True)


def test_idle_worker_exits_after_kill_9(tmp_path):
    _run_and_kill(tmp_path, busy=False)
