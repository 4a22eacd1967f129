"""Word, HTML, CSV and Markdown loaders: text, tables, and heading paths carried into chunks."""

from __future__ import annotations

import pytest

from ingest.loaders import LOADERS, LoadError, load
from rag.chunking import split_document
from rag.settings import IngestSettings

S = IngestSettings()


def _sections(doc, size=200):
    return [(p.meta.get("section"), p.text) for p in split_document(doc, size, 0)]


def test_every_format_is_registered():
    assert {".pdf", ".txt", ".md", ".docx", ".html", ".htm", ".csv"} <= set(LOADERS)


def test_docx_headings_and_tables(tmp_path):
    docx = pytest.importorskip("docx")
    d = docx.Document()
    d.add_heading("Widget Manual", 0)
    d.add_heading("Setup", 1)
    d.add_paragraph("Plug the widget in and wait for the green light.")
    d.add_heading("Battery", 2)
    d.add_paragraph("The battery lasts ten hours on a full charge.")
    t = d.add_table(rows=3, cols=3)
    for r, vals in enumerate([["Model", "Colour", "Price"], ["W-100", "Red", "$10"], ["W-200", "Blue", "$25"]]):
        for c, v in enumerate(vals):
            t.cell(r, c).text = v
    d.add_heading("Care", 1)
    d.add_paragraph("Keep it dry and away from the cat.")
    d.save(tmp_path / "manual.docx")

    doc = load(tmp_path / "manual.docx", S)
    assert doc.metadata["title"] == "Widget Manual" and doc.metadata["stats"]["tables"] == 1
    text = doc.pages[0].text
    assert "| Model | Colour | Price |" in text and "| W-200 | Blue | $25 |" in text
    secs = _sections(doc, 120)
    table = next(s for s, t in secs if "W-200" in t)
    assert table == "Widget Manual > Setup > Battery"
    assert any(s == "Widget Manual > Care" and "cat" in t for s, t in secs)


def test_docx_damaged_is_a_load_error(tmp_path):
    pytest.importorskip("docx")
    (tmp_path / "bad.docx").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(LoadError, match="docx"):
        load(tmp_path / "bad.docx", S)


def test_html_drops_scripts_and_styles_keeps_headings(tmp_path):
    pytest.importorskip("bs4")
    (tmp_path / "page.htm").write_text(
        "<html><head><title>Shop hours</title><style>.x{color:red}</style><script>var secret=1;</script></head>"
        "<body><nav>Home | About</nav><h1>Guide</h1><p>Intro text for <b>all</b> visitors.</p>"
        "<h2>Prices <em>2024</em></h2><table><tr><th>Item</th><th>Cost</th></tr><tr><td>Tea</td><td>3</td></tr>"
        "</table><h2>Hours</h2><p>Open 9 to 5.<br>Closed Sundays.</p></body></html>")
    doc = load(tmp_path / "page.htm", S)
    text = doc.pages[0].text
    assert "secret" not in text and "color" not in text and "Home" not in text
    assert "Intro text for all visitors." in text            # inline tags do not break lines
    assert "| Item | Cost |\n| --- | --- |\n| Tea | 3 |" in text
    assert doc.metadata["title"] == "Shop hours"
    secs = _sections(doc, 60)
    assert any(s == "Guide > Hours" and "Open 9 to 5.\nClosed Sundays." in t for s, t in secs)
    assert any(s == "Guide > Prices 2024" and "Tea" in t for s, t in secs)


def test_csv_rows_become_records_with_column_names(tmp_path):
    (tmp_path / "people.csv").write_text("name,city,age\nAnn,Paris,31\nBob,Oslo,\n\"Lee, Jr\",Rome,40\n")
    doc = load(tmp_path / "people.csv", S)
    assert doc.pages[0].text.splitlines() == [
        "name: Ann; city: Paris; age: 31", "name: Bob; city: Oslo", "name: Lee, Jr; city: Rome; age: 40"]
    assert doc.metadata["columns"] == ["name", "city", "age"] and doc.metadata["rows"] == 3


def test_csv_semicolons_and_blank(tmp_path):
    (tmp_path / "eu.csv").write_text("land;hauptstadt\nÖsterreich;Wien\n")
    assert load(tmp_path / "eu.csv", S).pages[0].text == "land: Österreich; hauptstadt: Wien"
    (tmp_path / "blank.csv").write_text("  \n")
    with pytest.raises(LoadError):
        load(tmp_path / "blank.csv", S)


def test_markdown_heading_paths_skip_code_fences(tmp_path):
    (tmp_path / "x.md").write_text("# Top\n\nintro\n\n```\n# not a heading\n```\n\n## Sub A\n\ntext a\n\n"
                                   "### Deep\n\ndeep text\n\n## Sub B\n\ntext b\n")
    doc = load(tmp_path / "x.md", S)
    assert doc.metadata["title"] == "Top"
    assert [s for _, _, s in doc.metadata["sections"]] == ["Top", "Top > Sub A", "Top > Sub A > Deep", "Top > Sub B"]
    secs = {t: s for s, t in _sections(doc, 20)}
    assert secs["deep text"] == "Top > Sub A > Deep" and secs["## Sub B\n\ntext b"] == "Top > Sub B"
    assert all(s == "Top" for t, s in secs.items() if "not a heading" in t)
