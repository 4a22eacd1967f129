"""Finding and showing what ``python -m eval --out DIR`` and ``python -m finetune.qlora`` wrote."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rag.llms.adapter_meta import ADAPTER_META

SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache", ".hypothesis",
             "site-packages", "cache", "index"}


def find_eval_reports(roots: list[Path], max_depth: int = 5) -> list[Path]:
    """Folders holding an eval ``summary.json`` under ``roots`` (newest first, no duplicates).

    Hidden folders and virtual environments are skipped unless a root itself is one (the data
    directory is ``.ragtune`` by default).
    """
    found: dict[Path, float] = {}
    for root in roots:
        root = root.resolve()
        if not root.is_dir():
            continue
        base_depth = len(root.parts)
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            if len(here.parts) - base_depth >= max_depth:
                dirnames[:] = []
            dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")]
            if "summary.json" in filenames and _is_eval_summary(here / "summary.json"):
                found[here] = (here / "summary.json").stat().st_mtime
    return sorted(found, key=lambda p: found[p], reverse=True)


def _is_eval_summary(path: Path) -> bool:
    try:
        return isinstance(load_summary(path.parent).get("configs"), list)
    except (OSError, ValueError):
        return False


def load_summary(folder: Path) -> dict[str, Any]:
    return json.loads((Path(folder) / "summary.json").read_text(encoding="utf-8"))


def metric_order() -> list[str]:
    try:
        from eval.report import TABLE_ORDER
    except ImportError:  # eval's optional deps missing: plain order
        return []
    return list(TABLE_ORDER)


def comparison_rows(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per configuration: name, llm, retrieval, n, then its metrics in eval's table order."""
    order = metric_order()
    present: list[str] = []
    for c in summary.get("configs", []):
        present += [m for m, v in (c.get("metrics") or {}).items() if v is not None and m not in present]
    metrics = [m for m in order if m in present] + [m for m in present if m not in order]
    rows = []
    for c in summary.get("configs", []):
        row = {"config": c.get("name"), "llm": c.get("llm") or "-", "retrieval": c.get("retrieval"), "n": c.get("n")}
        row.update({m: (c.get("metrics") or {}).get(m) for m in metrics})
        rows.append(row)
    return rows


def plots(folder: Path, summary: dict[str, Any]) -> list[Path]:
    named = (summary.get("run") or {}).get("plots") or []
    paths = [Path(folder) / n for n in named if (Path(folder) / n).is_file()]
    return paths or sorted(Path(folder).glob("*.png"))


def adapter_metadata(path: str | Path) -> dict[str, Any]:
    """The full ``ragtune_adapter.json`` of an adapter folder ({} when absent or unreadable)."""
    try:
        return json.loads((Path(path) / ADAPTER_META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
