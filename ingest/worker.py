"""Parsing files in worker processes started as ``python -m ingest.worker``.

Why not ``multiprocessing``: its spawn and forkserver start methods re-import the caller's
``__main__`` in every worker. A user's plain script without an ``if __name__ == "__main__":``
guard (how most first scripts are written) then re-runs ``rag.ingest(...)`` inside the worker,
which dies while starting, and every file used to be blamed for it ("damaged PDF?"). A worker
started as its own module imports only ``ingest``, whatever the caller is: a script, a notebook,
a FastAPI or Streamlit app. (``fork`` is no option either: the caller may run torch threads.)

Each worker parses one file at a time, so a crash or a timeout is that file's alone. Outcomes:

- ``("ok", (Document, pieces))``
- ``("error", reason)``: the file caused it (the parser raised on its bytes, crashed on it, or
  timed out on it alone); the pipeline remembers the verdict until the file changes.
- ``("transient", reason)``: not the file's fault (out of memory, the worker killed from
  outside); reported for this run, never remembered, retried by the next run.

Protocol: two pipes whose descriptors the child gets on its command line, framed and pickled by
``multiprocessing.connection``. Only this parent writes to them, so the child unpickles nothing
it did not get from ragtune itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rag.errors import RagtuneError

Outcome = tuple[str, Any]  # ("ok" | "error" | "transient", payload or reason)

# The folder that holds the ``ingest`` package, so ``-m ingest.worker`` resolves even when the
# caller found ragtune through a sys.path entry of its own rather than an install.
_ROOT = str(Path(__file__).resolve().parents[1])
START_TIMEOUT_S = 120.0  # imports on a busy 2-core box take seconds; a wedged start fails loudly


class WorkerStartError(RagtuneError):
    """A parse worker could not start: nothing to do with any file, so no file is blamed."""


def parse_file(path: str, settings: Any) -> Outcome:
    """Load and split one file (runs inside a worker, or inline with ``ingest.workers = 0``)."""
    from ingest.loaders import LoadError, load
    from rag.chunking import split_document

    try:
        doc = load(Path(path), settings)
        pieces = split_document(doc, settings.chunk_size, settings.chunk_overlap)
        return "ok", (doc, pieces)
    except LoadError as e:
        return "error", str(e)
    except MemoryError:
        # The machine's state, not necessarily the file: retried next run, not remembered.
        return "transient", "ran out of memory while parsing (lower ingest.max_pages or split the file)"
    except Exception as e:  # noqa: BLE001 - any parser bug fails this file only
        return "error", f"parser error: {e.__class__.__name__}: {str(e)[:200]}"


class ParseWorker:
    """One worker process; ``submit`` a file, then ``result`` within a deadline."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self._send: Connection | None = None
        self._recv: Connection | None = None
        self._stderr: deque[str] = deque(maxlen=20)

    def start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        # -P: the caller's current folder is not put first on sys.path (a user's own `ingest/`
        # or `rag/` folder must not shadow ours).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")]))}
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "ingest.worker", str(to_child_r), str(from_child_w), str(os.getpid())],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, env=env, start_new_session=True)  # Ctrl-C is the parent's to handle
        except OSError as e:
            for fd in (to_child_r, to_child_w, from_child_r, from_child_w):
                os.close(fd)
            raise WorkerStartError(f"the parse worker could not start: {e}") from e
        os.close(to_child_r)
        os.close(from_child_w)
        self._send = Connection(to_child_w, readable=False)
        self._recv = Connection(from_child_r, writable=False)
        threading.Thread(target=self._drain, args=(self.proc.stderr,), daemon=True).start()
        ready = self._recv.poll(START_TIMEOUT_S)
        try:
            hello = self._recv.recv() if ready else None
        except (EOFError, OSError):
            hello = None
        if hello != "ready":
            self.close()
            time.sleep(0.1)  # let the drain thread catch the child's last words
            tail = " | ".join(self._stderr)[-600:] or "no output"
            raise WorkerStartError(
                "the parse worker could not start (no file was blamed; run again, or parse in this "
                f"process with --workers 0 / ingest.workers = 0): {tail}")

    def _drain(self, stream) -> None:
        for line in iter(stream.readline, b""):
            self._stderr.append(line.decode("utf-8", "replace").rstrip())

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def submit(self, fn: Any, path: str, settings: Any) -> None:
        if not self.alive:
            self.start()
        self._send.send((fn, path, settings))

    def result(self, started: float, timeout_s: float) -> Outcome:
        """The outcome of the file submitted at ``started`` (``time.monotonic()``); past
        ``timeout_s`` or on a crash the worker is killed (the next ``submit`` starts a fresh one)."""
        if not self._recv.poll(max(0.0, started + timeout_s - time.monotonic())):
            self.close()
            return "error", f"parsing took over {timeout_s:g} s (raise ingest.file_timeout_s to allow more)"
        try:
            return self._recv.recv()
        except (EOFError, OSError):
            code = self.proc.wait()
            self.close()
            if code == -signal.SIGKILL:
                # The kernel's OOM killer or someone's kill -9: not evidence against the file.
                return "transient", ("the parse worker was killed (out of memory?) while parsing this file; "
                                     "not remembered, the next run retries it")
            what = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
            return "error", f"the parser crashed on this file ({what}; damaged file?)"

    def close(self) -> None:
        for conn in (self._send, self._recv):
            if conn is not None:
                conn.close()
        self._send = self._recv = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None


def _exit_with_parent(parent: int) -> None:
    """Exit once the ingest process is gone, even mid-parse (after a ``kill -9`` of the parent
    nothing else would end a worker stuck on a hostile file)."""
    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="ragtune-parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    recv = Connection(int(argv[0]), writable=False)
    send = Connection(int(argv[1]), readable=False)
    _exit_with_parent(int(argv[2]))
    import ingest.loaders  # noqa: F401 - the parsers' imports are part of starting, not of a file

    send.send("ready")
    while True:
        try:
            fn, path, settings = recv.recv()
        except (EOFError, OSError):
            return 0  # the parent closed the pipe: done
        send.send(fn(path, settings))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
