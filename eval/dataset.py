"""Reference sets: one JSON object per line.

    {"id": "q1", "question": "...", "answer": "..." | ["...", ...],
     "sources": [{"source": "file.pdf", "page": 2, "pages": [2, 3]}]}

``question`` and ``answer`` are required (``answer`` may be a list of acceptable references);
``id`` defaults to the line number; ``sources`` is optional and only needed for retrieval
metrics. In a source, ``page`` 0 or missing means "any page of that file"; ``pages`` (optional)
lists every page the evidence spans, for passages that cross a page break (the SQuAD set).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import DataError
from rag.jsonl import raise_problems, read_jsonl

__all__ = ["Example", "Reference", "load_dataset", "parse_example"]



@dataclass(frozen=True, slots=True)
class Reference:
    """Where the evidence for an answer lives: a file and, optionally, its page(s)."""

    source: str
    page: int = 0
    pages: tuple[int, ...] = ()

    @property
    def page_set(self) -> frozenset[int]:
        """Acceptable pages; empty = any page."""
        pages = set(self.pages)
        if self.page > 0:
            pages.add(self.page)
        return frozenset(p for p in pages if p > 0)


@dataclass(slots=True)
class Example:
    """One reference question."""

    id: str
    question: str
    answers: list[str]
    sources: list[Reference] = field(default_factory=list)
    line: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_sources(raw: Any, problems: list[str]) -> list[Reference]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append("field 'sources': expected a list of {\"source\", \"page\"} objects")
        return []
    out = []
    for i, item in enumerate(raw):
        where = f"sources[{i}]"
        if isinstance(item, str):  # a bare file name is accepted: any page of it
            item = {"source": item}
        if not isinstance(item, dict):
            problems.append(f"field '{where}': expected an object like {{\"source\": \"file.pdf\", \"page\": 1}}")
            continue
        source = item.get("source")
        if not isinstance(source, str) or not source.strip():
            problems.append(f"field '{where}.source': expected a non-empty string")
            continue
        page = item.get("page", 0)
        if page is None:
            page = 0
        if not _is_int(page) or page < 0:
            problems.append(f"field '{where}.page': expected an integer >= 0 (0 = any page), got {page!r}")
            continue
        pages = item.get("pages", [])
        if pages is None:
            pages = []
        if not isinstance(pages, list) or not all(_is_int(p) and p > 0 for p in pages):
            problems.append(f"field '{where}.pages': expected a list of page numbers >= 1, got {pages!r}")
            continue
        out.append(Reference(source.strip(), page, tuple(pages)))
    return out


def parse_example(obj: Any, line: int = 0) -> tuple[Example | None, list[str]]:
    """Validate one decoded line; returns the example (or None) and its problems."""
    problems: list[str] = []
    if not isinstance(obj, dict):
        return None, [f"expected a JSON object, got {type(obj).__name__}"]
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        problems.append("field 'question': missing or not a non-empty string")
    answer = obj.get("answer", obj.get("answers"))
    if isinstance(answer, str):
        answers = [answer]
    elif isinstance(answer, list) and answer and all(isinstance(a, str) for a in answer):
        answers = list(answer)
    else:
        answers = []
        problems.append("field 'answer': missing, or not a string / non-empty list of strings")
    if answers and not any(a.strip() for a in answers):
        problems.append("field 'answer': every reference answer is blank")
    sources = _parse_sources(obj.get("sources"), problems)
    qid = obj.get("id", line)
    if not isinstance(qid, (str, int)) or isinstance(qid, bool):
        problems.append(f"field 'id': expected a string or integer, got {type(qid).__name__}")
    if problems:
        return None, problems
    extra = {k: v for k, v in obj.items() if k not in {"id", "question", "answer", "answers", "sources"}}
    return Example(str(qid), question.strip(), answers, sources, line, extra), []


def load_dataset(path: str | Path, *, limit: int | None = None) -> list[Example]:
    """Read a reference JSONL file.

    Args:
        path: the file; blank lines and lines starting with ``#`` or ``//`` are skipped.
        limit: keep only the first ``limit`` examples (after validation of the whole file).

    Raises:
        FileNotFoundError: no such file.
        DataError: one message listing every malformed line as ``FILE:LINE: field ...``,
            duplicate ids, or an empty file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such dataset file: {path}")
    problems: list[str] = []
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for n, obj, problem in read_jsonl(path):
        if problem:
            problems.append(problem)
            continue
        ex, errs = parse_example(obj, n)
        problems += [f"{path}:{n}: {err}" for err in errs]
        if ex is None:
            continue
        if ex.id in seen:
            problems.append(f"{path}:{n}: field 'id': duplicate id '{ex.id}' (first on line {seen[ex.id]})")
            continue
        seen[ex.id] = n
        examples.append(ex)
    raise_problems(path, problems)
    if not examples:
        raise DataError(f"{path}: no questions (expected JSON lines with 'question' and 'answer')")
    return examples[:limit] if limit else examples
