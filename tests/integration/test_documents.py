"""Documents as users have them, end to end: table cells retrieved with their header, heading paths
and OCR flags in stored chunks, and the per-file ``--report`` over the shared PDFs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingest.__main__ import main as ingest_main
from tests.conftest import shared
from tests.unit.ingest.test_tables import _table_pdf

COUNTRIES = [["Austria", "Vienna", "8,917,205", "Euro"], ["Norway", "Oslo", "5,379,475", "Krone"],
             ["Japan", "Tokyo", "125,836,021", "Yen"], ["Chile", "Santiago", "19,116,201", "Peso"],
             ["Kenya", "Nairobi", "47,564,296", "Shilling"], ["Peru", "Lima", "29,381,884", "Sol"]]


def test_question_about_a_cell_retrieves_the_table_with_its_header(make_rag, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    filler = [[f"Land{i:02d}", f"Town{i:02d}", f"{i * 7919:,}", "Coin"] for i in range(60)]
    _table_pdf(docs / "countries.pdf", rows=filler[:30] + COUNTRIES + filler[30:])
    (docs / "notes.md").write_text("# Travel notes\n\nJapan is an island country in East Asia. Tokyo hosted "
                                   "the Olympic Games in 1964 and 2021.\n")
    rag = make_rag()
    res = rag.ingest([docs])
    # the table runs over two pages: two parts, the second under the first one's header
    assert not res.failed and [f.tables for f in res.files if f.source == "countries.pdf"] == [2]
    hits = rag.retrieve("What currency is used in Kenya?", k=3, mode="hybrid")
    top = next(h for h in hits if h.source == "countries.pdf")
    assert "| Kenya | Nairobi | 47,564,296 | Shilling |" in top.text
    assert "| Country | Capital | Population | Currency |" in top.text     # the header travels with it
    assert top.page in (1, 2) and top.text.startswith("Table ")


def test_sections_and_flags_reach_stored_chunks(make_rag, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "faq.md").write_text("# FAQ\n\n## Returns\n\nReturns are accepted within 30 days of delivery.\n\n"
                                 "## Shipping\n\nOrders ship from Rotterdam within two working days.\n")
    (docs / "stock.csv").write_text("sku,colour,stock\nW-100,red,12\nW-200,blue,0\n")
    rag = make_rag()
    rag.settings.ingest.chunk_size, rag.settings.ingest.chunk_overlap = 80, 0
    rag.ingest([docs])
    hit = rag.retrieve("Where do orders ship from?", k=1, mode="bm25")[0]
    assert hit.metadata["section"] == "FAQ > Shipping" and hit.metadata["format"] == "markdown"
    hit = rag.retrieve("stock of the blue W-200", k=1, mode="bm25")[0]
    assert hit.source == "stock.csv" and "sku: W-200; colour: blue; stock: 0" in hit.text


def test_report_flag_writes_markdown_and_json(tmp_path, capsys):
    docs = tmp_path / "docs"
    docs.mkdir()
    _table_pdf(docs / "t.pdf")
    (docs / "empty.pdf").write_bytes(b"")
    report = tmp_path / "report.md"
    code = ingest_main([str(docs), "--json", "--report", str(report), "--workers", "0"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert {"added", "updated", "unchanged", "removed", "failed", "chunks", "seconds", "report"} <= set(out)
    rows = {r["source"]: r for r in out["report"]}
    assert rows["t.pdf"]["tables"] == 1 and rows["t.pdf"]["pages"] == 1 and rows["t.pdf"]["text_pages"] == 1
    assert rows["empty.pdf"]["status"] == "failed" and rows["empty.pdf"]["reason"].startswith("empty file")
    text = report.read_text()
    assert "| t.pdf | added | 1 | 1 | 0 | 0 | 1 |" in text and "empty file" in text
    # without --report the JSON keeps exactly its documented keys
    ingest_main([str(docs), "--json"])
    assert "report" not in json.loads(capsys.readouterr().out)


class _HashEmbedder:
    """Parsing is what this test measures: vectors from hashed words stand in for MiniLM."""

    id, dim, max_tokens = "test-hash-64", 64, 256

    def embed(self, texts):
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, hash(w) % self.dim] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)

    def embed_query(self, text):
        return self.embed([text])[0]

    def count_tokens(self, texts):
        return [int(len(t.split()) * 1.5) + 2 for t in texts]

    def close(self):
        pass


@pytest.mark.slow
def test_report_covers_every_shared_pdf(tmp_path, capsys, monkeypatch):
    import rag.embedders

    monkeypatch.setattr(rag.embedders, "open_embedder", lambda *a, **k: _HashEmbedder())
    pdfs = shared("pdfs")
    rows = [line.split("\t") for line in (pdfs / "MANIFEST.tsv").read_text().splitlines()[1:] if line.strip()]
    report = tmp_path / "report.md"
    code = ingest_main([str(pdfs), "--json", "--report", str(report)])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    by_source = {r["source"]: r for r in out["report"]}
    assert {s for s in by_source if s.endswith(".pdf")} == {r[0] for r in rows}
    for name, pages, *_ in rows:
        r = by_source[name]
        assert r["status"] == "failed" and r["reason"] or r["status"] == "added" and r["chunks"] > 0, name
        if r["status"] == "added" and pages:
            assert r["pages"] == int(pages), name
            assert r["text_pages"] + r["ocr_pages"] + r["empty_pages"] == r["pages"], name
    text = report.read_text()
    assert all(f"| {name} |" in text for name, *_ in rows)
    assert by_source["pdfplumber/nics-background-checks-2015-11.pdf"]["tables"] >= 1
    assert by_source["pdfplumber/chelsea_pdta.pdf"]["tables"] >= 10
    assert "encrypted" in by_source["pdfplumber/password-example.pdf"]["reason"]
    assert Path(report).stat().st_size > 1000
