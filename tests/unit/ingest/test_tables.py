"""Ruled tables in PDFs come out as Markdown-like blocks with their header; running headers go."""

from __future__ import annotations

import pytest

from ingest import tables
from ingest.layout import strip_running_lines
from ingest.loaders import load
from rag.chunking import split_document
from rag.settings import IngestSettings

S = IngestSettings()
HEADER = ["Country", "Capital", "Population", "Currency"]
ROWS = [["Austria", "Vienna", "8,917,205", "Euro"], ["Norway", "Oslo", "5,379,475", "Krone"],
        ["Japan", "Tokyo", "125,836,021", "Yen"], ["Chile", "Santiago", "19,116,201", "Peso"]]


def _table_pdf(path, rows=ROWS, pages=1, running=False):
    pytest.importorskip("reportlab")
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Table, TableStyle

    styles = getSampleStyleSheet()

    def decorate(canvas, doc):
        if running:
            canvas.drawString(72, A4[1] - 40, "ACME Corp - Annual Report 2023")
            canvas.drawString(280, 30, f"Page {doc.page}")

    story = []
    for n in range(pages):
        story.append(Paragraph(f"Section {n + 1}: countries we ship to and the money they use there.", styles["Normal"]))
        t = Table([HEADER, *rows])
        t.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
        story += [t, Paragraph("All figures are from the latest census in each country.", styles["Normal"])]
        if n + 1 < pages:
            story.append(PageBreak())
    SimpleDocTemplate(str(path), pagesize=A4, invariant=1).build(story, onFirstPage=decorate, onLaterPages=decorate)
    return path


def test_ruled_table_becomes_markdown_with_header(tmp_path):
    doc = load(_table_pdf(tmp_path / "t.pdf"), S)
    text = doc.pages[0].text
    assert doc.metadata["stats"]["tables"] == 1
    assert "| Country | Capital | Population | Currency |" in text
    assert "| Japan | Tokyo | 125,836,021 | Yen |" in text
    # the table replaces its flattened text, in reading order between the paragraphs
    assert text.index("Section 1") < text.index("| Country") < text.index("latest census")
    assert "Japan Tokyo" not in text


def test_long_table_repeats_header_in_every_chunk(tmp_path):
    rows = [[f"Land{i:03d}", f"City{i:03d}", f"{i * 1000:,}", "Coin"] for i in range(120)]
    doc = load(_table_pdf(tmp_path / "long.pdf", rows=rows), S)
    pieces = split_document(doc, 1000, 200)
    with_rows = [p.text for p in pieces if "| Land" in p.text]
    assert len(with_rows) > 3
    assert all("| Country | Capital | Population | Currency |" in t for t in with_rows)
    assert all(len(t) <= 1000 for t in with_rows)
    found = {r.split(" | ")[0].strip("| ") for t in with_rows for r in t.splitlines() if r.startswith("| Land")}
    assert len(found) == 120          # every row kept, none lost between blocks


def test_pages_without_drawings_skip_table_extraction(tmp_path, monkeypatch):
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(tmp_path / "plain.pdf"))
    c.drawString(72, 720, "Only prose here, nothing tabular, no lines drawn at all.")
    c.save()
    called = []
    monkeypatch.setattr(tables, "extract_tables", lambda *a, **k: called.append(a) or {})
    load(tmp_path / "plain.pdf", S)
    assert called == []


def test_running_header_and_footer_removed(tmp_path):
    doc = load(_table_pdf(tmp_path / "r.pdf", pages=4, running=True), S)
    assert doc.metadata["stats"]["running_lines_removed"] >= 8
    for page in doc.pages:
        assert "ACME Corp" not in page.text and "Page " not in page.text
        assert "| Country | Capital | Population | Currency |" in page.text   # table headers are kept


def test_strip_running_lines_normalises_digits_and_needs_most_pages():
    pages = [f"Report 2023 page {i}\nBody {i} text unique {'x' * i}\n{i} of 5" for i in range(1, 6)]
    out, removed = strip_running_lines(pages)
    assert removed == 10 and all(p.startswith("Body") for p in out)
    few = ["Same top\nbody one", "Same top\nbody two"]           # two pages prove nothing
    assert strip_running_lines(few) == (few, 0)
    some = ["Top line\nA"] * 2 + ["Other\nB", "Third\nC", "Fourth\nD"]   # 2 of 5 < 60 %
    assert strip_running_lines(some)[1] == 0


def test_wide_tables_become_records():
    t = tables.Table(2, (0, 0, 1, 1), (1, 1), "Checks", [f"Column {i}" for i in range(30)],
                     [[str(i) for i in range(30)]])
    block = tables.to_blocks(t, 1)[0]
    assert block.startswith("Table 1 (page 2): Checks\n") and "Column 7: 7; Column 8: 8" in block
