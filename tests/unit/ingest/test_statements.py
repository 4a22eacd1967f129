"""Financial statements from real 10-Q filings: multi-line period headers, $ and negatives kept with
their figures, the statement title carried, line items under their group."""

from __future__ import annotations

import pytest

from ingest import statements, tables
from ingest.loaders import load
from ingest.pdf_lines import page_lines
from rag.settings import IngestSettings
from tests.conftest import shared


def _page_tables(name: str, number: int):
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(shared("sec-10q", "docs", name)))
    page = pdf[number - 1]
    return statements.find(page_lines(page), number, page.get_size())


def _row(table, label: str) -> list[str]:
    return next(r[1:] for r in table.rows if r[0] == label)


def test_amazon_income_statement_header_caption_and_cells():
    (t,) = _page_tables("2023 Q3 AMZN.pdf", 4)
    assert t.caption == ("AMAZON.COM, INC. CONSOLIDATED STATEMENTS OF OPERATIONS "
                         "(in millions, except per share data) (unaudited)")
    assert t.header[1:] == ["Three Months Ended September 30, 2022", "Three Months Ended September 30, 2023",
                            "Nine Months Ended September 30, 2022", "Nine Months Ended September 30, 2023"]
    assert _row(t, "Net product sales") == ["$59,340", "$63,171", "$172,370", "$179,184"]
    assert _row(t, "Total net sales") == ["127,101", "143,083", "364,779", "404,824"]
    assert _row(t, "Operating expenses: Fulfillment") == ["20,583", "22,314", "61,196", "64,524"]
    assert _row(t, "Net income (loss)") == ["$2,872", "$9,879", "$(3,000)", "$19,801"]
    assert _row(t, "Interest expense") == ["(617)", "(806)", "(1,673)", "(2,469)"]


def test_intel_statement_without_rulings_two_line_header_and_dashes():
    (t,) = _page_tables("2023 Q3 INTC.pdf", 6)
    assert t.caption.startswith("Consolidated Condensed Statements of Income")
    assert t.header == ["(In Millions, Except Per Share Amounts; Unaudited)",
                        "Three Months Ended Sep 30, 2023", "Three Months Ended Oct 1, 2022",
                        "Nine Months Ended Sep 30, 2023", "Nine Months Ended Oct 1, 2022"]
    assert _row(t, "Net revenue") == ["$14,158", "$15,338", "$38,822", "$49,012"]
    assert _row(t, "Restructuring and other charges") == ["816", "664", "1,080", "(460)"]
    assert _row(t, "Less: Net income (loss) attributable to non-controlling interests") == ["13", "—", "(5)", "—"]
    assert _row(t, "Weighted average shares of common stock outstanding: Diluted") == ["4,229", "4,125", "4,180", "4,123"]


def test_balance_sheet_continues_under_the_same_header():
    first, second = _page_tables("2023 Q3 INTC.pdf", 8)[:2]
    assert first.header[1:] == ["Sep 30, 2023", "Dec 31, 2022"] and second.header == first.header
    assert _row(first, "Current assets: Cash and cash equivalents") == ["$7,621", "$11,144"]
    assert _row(first, "Total assets") == ["$188,837", "$182,103"]
    assert second.caption.endswith("(continued)")


def test_blocks_say_which_line_item_and_period():
    (t,) = _page_tables("2023 Q3 AMZN.pdf", 4)
    for block in tables.to_blocks(t, 2, 600):
        head = block.splitlines()
        assert head[0].startswith("Table 2 (page 4): AMAZON.COM, INC. CONSOLIDATED STATEMENTS OF OPERATIONS")
        assert head[1] == ("|  | Three Months Ended September 30, 2022 | Three Months Ended September 30, 2023 | "
                           "Nine Months Ended September 30, 2022 | Nine Months Ended September 30, 2023 |")


@pytest.mark.slow
def test_loader_replaces_pdfplumbers_shifted_dollar_columns():
    # pdfplumber reads this ruled statement with "$" as its own column and a data row as header.
    doc = load(shared("sec-10q", "docs", "2023 Q3 AMZN.pdf"), IngestSettings(ocr="off"))
    page4 = next(p.text for p in doc.pages if p.number == 4)
    assert "| Net product sales | $59,340 | $63,171 | $172,370 | $179,184 |" in page4
    assert "| $ |" not in page4 and "column 2" not in page4
    page6 = next(p.text for p in doc.pages if p.number == 6)
    assert "| Current assets: Cash and cash equivalents | $53,888 | $49,605 |" in page6
    assert "|  | December 31, 2022 | September 30, 2023 (unaudited) |" in page6
