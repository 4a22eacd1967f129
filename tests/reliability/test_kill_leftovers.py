"""After ``kill -9`` of an ingest, its parse workers go too, idle or busy.

Regression: a ProcessPoolExecutor worker blocked on its task queue forever once its parent was
gone and kept the forkserver alive with it: every killed ingest left three processes behind. The
workers (``python -m ingest.worker``) now exit when their pipe closes (idle) or when the parent
watch sees the ingest process gone (busy on a hung file).
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


def _children(parent: int) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:  # field 4: ppid
                pids.append(int(proc.name))
    return pids


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":  # a zombie has exited; only its (dead) parent could reap it
            alive.append(pid)
    return alive


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
        while not (workers := _children(proc.pid)):    # the parse worker
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 20
    while (left := _alive(workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:   # do not leave them behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert left == [], "processes left behind by a killed ingest"


def test_busy_worker_exits_after_kill_9(tmp_path):
    _run_and_kill(tmp_path, busy=True)


def test_idle_worker_exits_after_kill_9(tmp_path):
    _run_and_kill(tmp_path, busy=False)
