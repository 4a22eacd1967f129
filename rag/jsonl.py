"""Line-numbered JSON Lines reading, shared by eval datasets and fine-tuning data.

Every problem names ``FILE:LINE`` and reading goes on, so one message lists everything to fix.
The file is split on ``\\n`` bytes only: ``str.splitlines()`` would also split on U+2028, U+0085
and friends, which JSON strings may hold raw (``json.dumps(ensure_ascii=False)`` writes them).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rag.errors import DataError

MAX_SHOWN = 20


def read_jsonl(path: Path) -> Iterator[tuple[int, Any, str | None]]:
    """``(line number, parsed value, None)`` or ``(line number, None, problem)`` in file order;
    blank lines and ``#`` / ``//`` comments are skipped."""
    with path.open("rb") as fh:  # bytes, so a line that is not UTF-8 is reported by number
        for n, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8-sig" if n == 1 else "utf-8").strip()
            except UnicodeDecodeError as e:
                yield n, None, f"{path}:{n}: not UTF-8 text ({e.reason} at byte {e.start} of the line)"
                continue
            if not text or text.startswith(("#", "//")):
                continue
            try:
                yield n, json.loads(text), None
            except json.JSONDecodeError as e:
                yield n, None, f"{path}:{n}: invalid JSON: {e.msg} (column {e.colno})"
            except RecursionError:
                yield n, None, f"{path}:{n}: invalid JSON: nested too deeply"


def raise_problems(path: Path, problems: list[str], what: str = "line") -> None:
    """One DataError listing the first ``MAX_SHOWN`` problems (nothing happens when there are none)."""
    if not problems:
        return
    shown = problems[:MAX_SHOWN]
    more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    raise DataError(f"{path}: {len(problems)} malformed {what}(s):\n  " + "\n  ".join(shown) + more)
