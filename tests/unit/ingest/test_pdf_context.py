"""Running headers/footers, titles and headings become each chunk's context line instead of vanishing."""

from __future__ import annotations

import pytest

from ingest.loaders import load
from ingest.pdf_context import identity
from rag.chunking import split_document
from rag.settings import IngestSettings
from rag.types import Document, Page
from tests.conftest import shared

pytest.importorskip("reportlab")

FOOTER = "ACME Corp | Q3 2023 Form 10-Q"
TOPICS = ["Revenue grew in every region because the new stores opened early.",
          "Operating costs fell after the warehouse consolidation finished.",
          "Cash on hand rose to cover the bond that matures next spring.",
          "Headcount stayed flat while the support team moved to Lisbon."]


def _report(path, title: str | None = None):
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    if title:
        c.setTitle(title)
    for n, body in enumerate(TOPICS, 1):
        c.setFont("Helvetica-Bold", 16)
        c.drawString(72, 770, f"Section {n}: {body.split()[0]} review")
        c.setFont("Helvetica", 10)
        for i in range(12):
            c.drawString(72, 740 - 14 * i, f"{body} Line {i} of the discussion on page {n}.")
        c.setFont("Helvetica", 8)
        c.drawString(72, 40, f"{FOOTER} | {n}")
        c.showPage()
    c.save()
    return path


def test_running_footer_becomes_context_not_body(tmp_path):
    doc = load(_report(tmp_path / "r.pdf"), IngestSettings())
    assert doc.metadata["stats"]["running_lines_removed"] == 4
    assert all(FOOTER not in p.text for p in doc.pages)
    pieces = split_document(doc, 1000, 200)
    assert pieces
    for p in pieces:
        line, _, body = p.text.partition("\n")
        assert line.startswith("[") and FOOTER in line, p.text[:200]
        assert FOOTER not in body and p.meta["context"] == line
    # citations still point at the page the body comes from
    assert {p.page for p in pieces} == {1, 2, 3, 4}
    assert all(f"page {p.page}." in p.body for p in pieces)


def test_metadata_title_and_heading_path_in_context(tmp_path):
    doc = load(_report(tmp_path / "t.pdf", title="Quarterly Operations Review"), IngestSettings())
    assert doc.metadata["title"] == "Quarterly Operations Review"
    pieces = split_document(doc, 400, 50)
    third = [p for p in pieces if p.page == 3]
    assert third and all(p.meta["section"] == "Section 3: Cash review" for p in third)
    assert all(p.context.startswith("[Quarterly Operations Review | ACME Corp") and "Section 3: Cash review" in p.context
               for p in third)


def test_context_parts_can_be_left_out(tmp_path):
    doc = load(_report(tmp_path / "n.pdf", title="Quarterly Operations Review"), IngestSettings())
    bare = split_document(doc, 1000, 200, context=())
    assert all(not p.context and not p.text.startswith("[") for p in bare)
    no_title = split_document(doc, 1000, 200, context=("identity", "section"))
    assert all("Quarterly Operations Review" not in p.context and FOOTER in p.context for p in no_title)


def test_chunk_inside_a_table_names_the_table_and_columns():
    rows = "\n".join(f"| Item {i:03d} | {i * 7:,} | {i * 9:,} |" for i in range(60))
    text = ("Intro paragraph.\n\nTable 1 (page 1): Segment results (in millions)\n"
            "| Segment | Three Months Ended Sep 30, 2023 | Three Months Ended Oct 1, 2022 |\n| --- | --- | --- |\n" + rows)
    doc = Document("t.pdf", [Page(1, text)], {"context": {"title": "", "identity": "Intel Corporation | Form 10-Q"}})
    pieces = split_document(doc, 500, 0)
    inside = [p for p in pieces if not p.body.startswith(("Table", "Intro"))]
    assert inside
    for p in inside:
        assert "Table 1 (page 1): Segment results (in millions)" in p.context
        assert "Three Months Ended Sep 30, 2023" in p.context and p.context.startswith("[Intel Corporation")


def test_sec_cover_gives_company_form_and_quarter():
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(shared("sec-10q", "docs", "2022 Q3 INTC.pdf")))
    cover = pdf[0].get_textpage().get_text_bounded()
    assert identity(cover, ["Table of Contents", "Quarterly Report 29"]) == (
        "Intel Corporation (INTC) | Form 10-Q | quarter ended October 1, 2022 (Q3 2022) | Quarterly Report")
