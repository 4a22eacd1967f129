"""The loop's own files: JSONL rows re-read with rag.jsonl, so text holding U+2028 survives a resume."""

from __future__ import annotations

import pytest

from loop.params import load_params
from loop.stages import Context, split, synthesise
from loop.workdir import Paths, read_rows, write_rows
from rag.errors import DataError
from rag.settings import Settings
from rag.types import Chunk

LS = "\u2028"  # LINE SEPARATOR: str.splitlines() breaks a line on it, JSON strings may hold it raw


def test_a_question_with_a_line_separator_survives_the_next_stage(tmp_path, monkeypatch):
    """synthesise writes qa.jsonl; split (a later run, e.g. `dvc repro`'s next process) reads it back."""
    from finetune import synth

    chunks = [Chunk(f"c{i}", text, f"{doc}.pdf", 1) for i, (doc, text) in enumerate([
        ("Acme", f"The refund window{LS}for widgets is 30 days."),
        ("Tides", "Spring tides happen twice a month."),
        ("Moon", "The Moon orbits the Earth every 27 days."),
    ])]
    replies = {"c0": (f"How long is the refund window{LS}for widgets?", "30 days"),
               "c1": ("How often do spring tides happen?", "twice a month"),
               "c2": ("How often does the Moon orbit the Earth?", "every 27 days")}

    def gen(text, source=""):
        q, a = replies[next(c.id for c in chunks if c.text == text)]
        return synth.QA(q, a)

    monkeypatch.setattr(synth, "read_chunks", lambda uri, limit: list(chunks))
    monkeypatch.setattr(synthesise, "make_generator", lambda spec, settings: gen)
    params = load_params(None, ["synthesise.generator=fake", "split.val=0", "split.test_docs=Tides.pdf"],
                         docs=str(tmp_path), out=str(tmp_path / "run"))
    paths, ctx = Paths(params.out), Context(Settings(data_dir=tmp_path / "data"))
    assert synthesise.run(params, paths, ctx)["kept"] == 3
    assert LS in paths.qa.read_text(encoding="utf-8")  # written raw (ensure_ascii=False), as before

    assert split.run(params, paths, ctx) == {"train": 2, "val": 0, "test": 1}
    train = read_rows(paths.split / "train.jsonl")
    assert f"How long is the refund window{LS}for widgets?" in [r["question"] for r in train]
    assert len(read_rows(paths.qa)) == 3


def test_read_rows_names_every_bad_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_rows(path, [{"q": f"a{LS}b"}, {"q": "c"}])
    assert read_rows(path) == [{"q": f"a{LS}b"}, {"q": "c"}]
    path.write_text('{"q": 1}\nnot json\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_rows(path)
    assert f"{path}:2: invalid JSON" in str(e.value) and f"{path}:3: expected a JSON object" in str(e.value)
