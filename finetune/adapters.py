"""List trained adapters: MLflow registry versions and ragtune_adapter.json folders under DATA_DIR/adapters.

    python -m finetune.adapters            # a table
    python -m finetune.adapters --json     # {"adapters": [{...}, ...]}
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rag.llms.adapter_meta import ADAPTER_META


def _from_folder(meta_file: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    m = meta.get("metrics", {})
    ml = meta.get("mlflow") or {}
    return {"path": str(meta_file.parent.resolve()), "base": meta.get("base_model"),
            "data_hash": (meta.get("data") or {}).get("hash"), "load_in_4bit": meta.get("load_in_4bit"),
            "best_eval_loss": m.get("best_eval_loss"), "final_eval_loss": m.get("final_eval_loss"),
            "train_loss": m.get("train_loss"), "created": meta.get("created"),
            "registered": f"{ml['registered_model']}/{ml['version']}" if ml.get("version") else None}


def _num(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def list_adapters(data_dir: str | Path, tracking_uri: str | None = None, paths: list[str] = ()) -> list[dict[str, Any]]:
    """Adapters found on disk (DATA_DIR/adapters, extra ``paths``) and in the MLflow registry, merged by folder."""
    found: dict[str, dict[str, Any]] = {}
    roots = [Path(data_dir) / "adapters", *map(Path, paths)]
    for root in roots:
        if (root / ADAPTER_META).exists():
            files = [root / ADAPTER_META]
        else:
            files = sorted(root.glob(f"*/{ADAPTER_META}")) + sorted(root.glob(f"*/*/{ADAPTER_META}"))
        for f in files:
            row = _from_folder(f)
            if row:
                found[row["path"]] = row
    db = Path(data_dir) / "mlflow.db"
    if tracking_uri or db.exists():
        from finetune.tracking import _quiet, default_tracking_uri

        _quiet()
        from mlflow import MlflowClient

        uri = tracking_uri or default_tracking_uri(data_dir)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        try:
            versions = client.search_model_versions()
        except Exception:  # noqa: BLE001 - no registry tables yet
            versions = []
        for v in versions:
            t = v.tags or {}
            path = t.get("adapter_dir") or v.source
            row = found.setdefault(path, {"path": path, "base": t.get("base_model"), "data_hash": t.get("data_hash"),
                                          "load_in_4bit": t.get("load_in_4bit") == "True",
                                          "best_eval_loss": _num(t.get("best_eval_loss")),
                                          "final_eval_loss": _num(t.get("final_eval_loss")),
                                          "train_loss": _num(t.get("train_loss")), "created": t.get("created")})
            row["registered"] = f"{v.name}/{v.version}"
            row["source"] = v.source
            row["aliases"] = list(getattr(v, "aliases", []) or [])
    return sorted(found.values(), key=lambda r: r.get("created") or "", reverse=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m finetune.adapters", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="Print {\"adapters\": [...]} as one JSON object.")
    p.add_argument("--path", action="append", default=[], help="Also look in this folder (repeatable).")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rag.settings import load_settings

    s = load_settings()
    rows = list_adapters(s.data_dir, s.tracking_uri, args.path)
    if args.json:
        print(json.dumps({"adapters": rows}))
        return 0
    if not rows:
        print(f"no adapters under {Path(s.data_dir) / 'adapters'} or in the MLflow registry")
        return 0
    fmt = "{:<10} {:<14} {:<21} {:>9} {:<25} {}"
    print(fmt.format("created", "base", "data", "eval", "registered", "path"))
    for r in rows:
        ev = r.get("best_eval_loss")
        print(fmt.format((r.get("created") or "")[:10], str(r.get("base"))[-14:], str(r.get("data_hash"))[:21],
                         f"{ev:.4f}" if ev is not None else "-", r.get("registered") or "-", r["path"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
