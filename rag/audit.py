"""The audit log: one JSON line per request to an authenticated server, in DATA_DIR/audit.jsonl.

Each line: ``time`` (UTC, ISO), ``key`` (the key's name, ``null`` when none was valid), ``route``,
``status``, ``client`` (address), ``collections`` searched or written, ``sources`` (the chunk ids
returned), ``latency_ms``, and ``reason`` for refusals. Never the key itself: the record is built
from named fields only, not from headers. The question text only with
``audit.log_questions = true`` (it may be as sensitive as the documents).

The file is created with mode 0600 and only appended to, one ``write`` per line under a lock, so
lines from concurrent requests never interleave.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.keys import redact_keys

FIELDS = ("key", "route", "status", "client", "collections", "sources", "latency_ms", "reason", "question")


class AuditLog:
    """Appends records to ``path``.

    Args:
        path: the JSONL file (its folder is created on the first record).
        log_questions: keep the ``question`` field; otherwise it is dropped.
    """

    def __init__(self, path: str | Path, *, log_questions: bool = False):
        self.path = Path(path)
        self.log_questions = log_questions
        self._lock = threading.Lock()
        self._fd: int | None = None

    def record(self, **fields: Any) -> None:
        """Write one line; unknown field names are refused (so no caller can log a header)."""
        unknown = set(fields) - set(FIELDS)
        if unknown:
            raise ValueError(f"audit: unknown fields {sorted(unknown)} (known: {', '.join(FIELDS)})")
        if not self.log_questions:
            fields.pop("question", None)
        elif isinstance(fields.get("question"), str):
            fields["question"] = redact_keys(fields["question"])  # a key pasted into a question stays out
        row = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"),
               **{k: v for k, v in fields.items() if v is not None or k == "key"}}
        line = (json.dumps(row, ensure_ascii=True, default=str) + "\n").encode()
        with self._lock:
            if self._fd is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.write(self._fd, line)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def read(path: str | Path) -> list[dict[str, Any]]:
    """Every record of an audit file (for tests and reports)."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
