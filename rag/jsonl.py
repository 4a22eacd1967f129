"""Line-numbered JSON Lines reading, shared by eval datasets and fine-tuning data.

Every problem names ``FILE:LINE`` and reading goes on, so one message lists everything to fix.
The file is split on ``\\n`` bytes only: ``str.splitlines()`` would also split on U+2028, U+0085
and friends, which JSON strings may hold raw (``json.dumps(ensure_ascii=False)`` writes them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rag.errors import DataError

MAX_SHOWN = 20


def read_jsonl(path: Path) -> tuple[list[tuple[int, Any]], list[str]]:
    """``([(line number, parsed value)], [problems])``; blank lines and ``#`` / ``//`` comments are skipped."""
    rows: list[tuple[int, Any]] = []
    problems: list[str] = []
    with path.open("rb") as fh:  # bytes, so a line that is not UTF-8 is reported by number
        for n, raw in enumerate(fh, 1):
            try:
                text = raw.decode("utf-8-sig" if n == 1 else "utf-8").strip()
            except UnicodeDecodeError as e:
                problems.append(f"{path}:{n}: not UTF-8 text ({e.reason} at byte {e.start} of the line)")
                continue
            if not text or text.startswith(("#", "//")):
                continue
            try:
                rows.append((n, json.loads(text)))
            except json.JSONDecodeError as e:
                problems.append(f"{path}:{n}: invalid JSON: {e.msg} (column {e.colno})")
            except RecursionError:
                problems.append(f"{path}:{n}: invalid JSON: nested too deeply")
    return rows, problems


def raise_problems(path: Path, problems: list[str], what: str = "line") -> None:
    """One DataError listing the first ``MAX_SHOWN`` problems (nothing happens when there are none)."""
    if not problems:
        return
    prefix = f"{path}:"

    def line(problem: str) -> int:  # file order, whichever pass found the problem
        head = problem[len(prefix):].split(":", 1)[0] if problem.startswith(prefix) else ""
        return int(head) if head.isdigit() else 0

    problems = sorted(problems, key=line)
    shown = problems[:MAX_SHOWN]
    more = f"\n  ... and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    raise DataError(f"{path}: {len(problems)} malformed {what}(s):\n  " + "\n  ".join(shown) + more)
