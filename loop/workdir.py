"""The pipeline folder: what each stage writes under OUT, and how the loop knows a stage is finished.

Each finished stage leaves ``OUT/.stages/NAME.json`` with a hash of its parameters, its own inputs
and the hash of the stage before it; a changed parameter re-runs that stage and every later one.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loop.params import LoopParams, stage_order
from rag.errors import ConfigError
from rag.jsonl import raise_problems, read_jsonl

__all__ = ["Paths", "fingerprints", "is_done", "log", "mark_done", "read_rows", "write_rows"]


def log(msg: str) -> None:
    print(f"[loop] {msg}", file=sys.stderr, flush=True)


class Paths:
    """Every file and folder the loop writes, under ``out``."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.index = self.out / "index"
        self.ingest_report = self.out / "ingest.json"
        self.qa = self.out / "qa.jsonl"
        self.synth_report = self.out / "synth_report.json"
        self.split = self.out / "split"
        self.teach = self.out / "teach"                        # split/{train,val}.jsonl + teacher targets
        self.teach_report = self.out / "teach_report.json"
        self.teacher_cache = self.out / "teacher_cache.jsonl"  # kept across runs (dvc: persist)
        self.train_rows = self.out / "finetune" / "train.jsonl"
        self.adapter = self.out / "adapter"
        self.metrics = self.out / "metrics.json"
        self.eval_rows = self.out / "eval_rows.jsonl"
        self.registry = self.out / "registry.json"
        self.stages = self.out / ".stages"

    def outputs(self, stage: str) -> list[Path]:
        return {"ingest": [self.index, self.ingest_report], "synthesise": [self.qa, self.synth_report],
                "split": [self.split / f"{n}.jsonl" for n in ("train", "val", "test")],
                "teach": [self.teach / "train.jsonl", self.teach / "val.jsonl", self.teach_report],
                "finetune": [self.adapter / "adapter_model.safetensors", self.train_rows],
                "eval": [self.metrics, self.eval_rows, self.registry]}[stage]

    def marker(self, stage: str) -> Path:
        return self.stages / f"{stage}.json"


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _docs_digest(docs: Path) -> list[tuple[str, str]]:
    files = [docs] if docs.is_file() else sorted(p for p in docs.rglob("*") if p.is_file()
                                                 and not any(part.startswith(".") for part in p.parts))
    return [(str(p.relative_to(docs) if docs.is_dir() else p.name), _file_sha(p)) for p in files]


def fingerprints(params: LoopParams) -> dict[str, str]:
    """Each stage's hash: its params, its own inputs, and the hash of the stage before it.

    Raises:
        ConfigError: DOCS does not exist.
    """
    docs = Path(params.docs)
    if not docs.exists():
        raise ConfigError(f"docs: no such file or folder: {docs}")
    dataset = params.eval.dataset
    own = {
        "ingest": [_docs_digest(docs), asdict(params.ingest)],
        "synthesise": [asdict(params.synthesise)],
        "split": [asdict(params.split)],
        "teach": [{k: v for k, v in asdict(params.teacher).items() if k != "threads"}],
        "finetune": [params.finetune, asdict(params.retrieval)],
        "eval": [asdict(params.eval), asdict(params.retrieval), _file_sha(Path(dataset)) if dataset else None,
                 {k: v for k, v in asdict(params.mlflow).items() if k != "enabled"}],
    }
    out, prev = {}, ""
    for stage in stage_order(params):  # no teacher: no teach stage, the hashes of the loop without one
        prev = out[stage] = _sha([stage, prev, own[stage]])
    return out


def is_done(paths: Paths, stage: str, fp: str) -> bool:
    """The stage's marker holds hash ``fp`` and every one of its outputs exists."""
    m = paths.marker(stage)
    if not m.exists() or not all(p.exists() for p in paths.outputs(stage)):
        return False
    try:
        return json.loads(m.read_text())["hash"] == fp
    except (ValueError, KeyError):
        return False


def mark_done(paths: Paths, stage: str, fp: str, seconds: float, info: Mapping[str, Any]) -> None:
    paths.stages.mkdir(parents=True, exist_ok=True)
    paths.marker(stage).write_text(json.dumps({"stage": stage, "hash": fp, "seconds": round(seconds, 2),
                                               "finished": datetime.now(UTC).isoformat(timespec="seconds"),
                                               **info}, indent=2))


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """JSONL, replaced atomically; text is written as is (``ensure_ascii=False``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(path)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows :func:`write_rows` wrote, read with :mod:`rag.jsonl` (split on ``\\n`` only, so a
    question holding U+2028 stays one row).

    Raises:
        DataError: listing every line that is not a JSON object, by ``FILE:LINE``.
    """
    rows, problems = [], []
    for n, row, problem in read_jsonl(path):
        if problem or not isinstance(row, dict):
            problems.append(problem or f"{path}:{n}: expected a JSON object")
        else:
            rows.append(row)
    raise_problems(path, problems)
    return rows
