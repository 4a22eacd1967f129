"""eval.dataset: the reference JSONL format and its error messages."""

from __future__ import annotations

import json

import pytest

from eval.dataset import Reference, load_dataset
from rag.errors import DataError


def write(tmp_path, lines):
    p = tmp_path / "ref.jsonl"
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    return p


def test_loads_strings_lists_sources_and_pages(tmp_path):
    p = write(tmp_path, [
        {"id": "q1", "question": " What? ", "answer": "yes", "sources": [{"source": "a.pdf", "page": 2}]},
        "",
        "# a comment",
        {"question": "Who?", "answer": ["A", "B"], "sources": ["b.md", {"source": "c.pdf", "page": 3,
                                                                          "pages": [3, 4]}], "extra": 1},
    ])
    a, b = load_dataset(p)
    assert (a.id, a.question, a.answers, a.sources) == ("q1", "What?", ["yes"], [Reference("a.pdf", 2)])
    assert b.id == "4" and b.line == 4 and b.answers == ["A", "B"] and b.extra == {"extra": 1}
    assert b.sources == [Reference("b.md", 0), Reference("c.pdf", 3, (3, 4))]
    assert b.sources[0].page_set == frozenset() and b.sources[1].page_set == {3, 4}
    assert [e.id for e in load_dataset(p, limit=1)] == ["q1"]


def test_all_problems_are_listed_with_file_line_and_field(tmp_path):
    p = write(tmp_path, [
        {"id": 1, "question": "ok", "answer": "fine"},
        {"id": 2, "answer": "no question"},
        "{not json",
        {"id": 4, "question": "q", "answer": [1, 2]},
        {"id": 5, "question": "q", "answer": "a", "sources": [{"source": "x.pdf", "page": -1}]},
        {"id": 6, "question": "q", "answer": "a", "sources": [{"page": 1}]},
        {"id": 7, "question": "q", "answer": "a", "sources": [{"source": "x", "pages": [0]}]},
        {"id": 1, "question": "dup", "answer": "a"},
        [1, 2],
    ])
    with pytest.raises(DataError) as e:
        load_dataset(p)
    msg = str(e.value)
    assert "8 malformed line(s)" in msg
    for needle in (f"{p}:2: field 'question'", f"{p}:3: invalid JSON", f"{p}:4: field 'answer'",
                   f"{p}:5: field 'sources[0].page'", f"{p}:6: field 'sources[0].source'",
                   f"{p}:7: field 'sources[0].pages'", f"{p}:8: field 'id': duplicate id '1' (first on line 1)",
                   f"{p}:9: expected a JSON object"):
        assert needle in msg, needle


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="no questions"):
        load_dataset(write(tmp_path, ["", "# only a comment"]))
    with pytest.raises(FileNotFoundError):
        load_dataset(tmp_path / "nope.jsonl")


def test_shipped_sample_set_loads():
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    examples = load_dataset(root / "data" / "eval" / "sample.jsonl")
    assert len(examples) >= 20 and all(e.sources for e in examples)
