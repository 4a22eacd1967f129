"""What a PDF says about itself, for the context line every chunk carries: a title, the document's
identity (company, form, period; from the cover page and the running headers/footers) and the
heading path each page position sits under.

A 10-Q page that reads "Net sales increased 13% ..." does not say whose net sales or which quarter;
the filing's cover does, once. Carrying that on every chunk lets both dense and BM25 retrieval find
the right filing (see docs/documents.md, bench/sec_bench.py).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import date, timedelta

from ingest.pdf_lines import MAX_HEADING, Line

MAX_PART = 160          # characters kept of each context part
GENERIC = re.compile(r"^(table of contents|contents|index|page|continued|\(continued\)|unaudited|\(unaudited\))$", re.IGNORECASE)
_MONTHS = {m: i for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_DATE = r"([A-Z][a-z]+\.? \d{1,2}, ?\d{4})"
_FORM = re.compile(r"\bFORM\s+(10-Q|10-K|20-F|40-F|8-K|6-K|S-1|N-CSR)\b", re.IGNORECASE)
_PERIOD = re.compile(r"for the (quarterly period|fiscal year|year|quarter|transition period) ended\s+" + _DATE, re.IGNORECASE)
_MAJOR = re.compile(r"(PART [IVX]+|Item \d+[A-Z]?\.|Note \d+)\b", re.IGNORECASE)
_TABLE_TITLE = re.compile(r"^Table \d+ \(page \d+\): ")
_NUMERIC = re.compile(r"^[-+($€£¥]*[\d.,]+\)?%?$|^[—–-]$")


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z][A-Za-z&'’.-]+", text)


def informative(text: str) -> bool:
    """A title worth showing: two or more words, not an id or a file name."""
    return len(_words(text)) >= 2 and not re.fullmatch(r"[\w.-]+\.(pdf|docx?|tex|html?)", text.strip(), re.IGNORECASE)


def _case(name: str) -> str:
    """'AMAZON.COM, INC.' -> 'Amazon.com, Inc.'; mixed-case names stay as written."""
    if name != name.upper():
        return name
    return " ".join(w[:1] + w[1:].lower() if len(w) > 1 else w for w in name.split())


def _quarter(text: str) -> str:
    """'September 30, 2023' -> 'Q3 2023' (a period ending in the first week of a month belongs to the
    quarter before it: Intel's 'October 1, 2022' closes Q3). Empty when the date does not parse."""
    m = re.match(r"([A-Za-z]{3})[a-z]*\.? (\d{1,2}), ?(\d{4})", text)
    if not m or m.group(1).lower() not in _MONTHS:
        return ""
    try:
        d = date(int(m.group(3)), _MONTHS[m.group(1).lower()], int(m.group(2))) - timedelta(days=7)
    except ValueError:
        return ""
    return f"Q{(d.month - 1) // 3 + 1} {d.year}"


def identity(cover: str, running: list[str]) -> str:
    """Company, form and period from a filing's cover page, plus running header/footer lines that
    name something (not "Table of Contents" or a bare page number)."""
    parts = []
    lines = [ln.strip() for ln in cover.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if re.match(r"\(?exact name of (the )?registrant", line, re.IGNORECASE) and i:
            name = _case(lines[i - 1])
            ticker = re.search(r"\b([A-Z]{1,5})\s+(?:The\s+)?(?:Nasdaq|New York Stock Exchange|NYSE)", cover)
            parts.append(name + (f" ({ticker.group(1)})" if ticker else ""))
            break
    form = _FORM.search(cover)
    if form:
        parts.append(f"Form {form.group(1).upper()}")
    period = _PERIOD.search(cover)
    if period and period.group(1).lower() != "transition period":
        kind = "quarter" if "quarter" in period.group(1).lower() else "fiscal year"
        when = period.group(2)
        label = _quarter(when) if kind == "quarter" else f"FY{when[-4:]}"
        parts.append(f"{kind} ended {when}" + (f" ({label})" if label else ""))
    named = []
    for line in running:
        # Drop the page number a footer ends with; keep lines that name something.
        text = re.sub(r"(\s*[|·•-]?\s*(page\s*)?\d+(\s*of\s*\d+)?)+\s*$", "", line.strip(), flags=re.IGNORECASE)
        if informative(text) and not GENERIC.match(text) and text.lower() not in " | ".join(named).lower():
            named.append(text)
    # What a header/footer already says is not repeated from the cover.
    parts = [p for p in parts if p.lower() not in " | ".join(named).lower()]
    return " | ".join(p[:MAX_PART] for p in parts + named)


def title(metadata: dict, headings: list[tuple[int, str, int]]) -> str:
    """The PDF's metadata title (or subject) when it names something, else the first top-level heading."""
    for key in ("Title", "Subject"):
        value = re.sub(r"\s+", " ", str(metadata.get(key) or "")).strip()
        if informative(value) and value.lower() != "untitled":
            return value[:MAX_PART]
    if headings:
        top = min(level for _, _, level in headings)
        return next(text for _, text, level in headings if level == top)[:MAX_PART]
    return ""


# -- headings --------------------------------------------------------------------------------------
def _is_data(line: Line) -> bool:
    return sum(1 for s in line.segments if _NUMERIC.match(s.text.replace(" ", ""))) >= 2


def headings(lines_by_page: dict[int, list[Line]], running: set[str] | None = None) -> list[tuple[int, str, int]]:
    """(page, text, level) for lines set larger than the body text or in bold on their own;
    level 0 is the largest style. "PART I" and "Item 2." lines rank above every other style."""
    sizes: Counter = Counter()
    for lines in lines_by_page.values():
        for ln in lines:
            sizes[round(ln.size, 1)] += len(ln.text)
    if not sizes:
        return []
    body = sizes.most_common(1)[0][0]
    running = running or set()
    found: list[tuple[int, Line]] = []
    for number, lines in sorted(lines_by_page.items()):
        bold_run = 0
        for i, ln in enumerate(lines):
            text = ln.text.strip()
            bold_run = bold_run + 1 if ln.bold else 0
            # Style first (cheap, and it rules out most lines), then what the words look like.
            if len(text) > MAX_HEADING or len(ln.segments) > 1:
                continue
            if not (ln.size >= body * 1.12 or (ln.bold and (len(text) < 90 or _MAJOR.match(text)))):
                continue
            letters = sum(c.isalpha() for c in text)
            if (letters < 3 or letters < len(text) / 2 or _is_data(ln)
                    or GENERIC.match(text) or line_key(text) in running or text.endswith((",", ";"))):
                continue
            nxt = lines[i + 1] if i + 1 < len(lines) else None
            if ln.bold and ln.size < body * 1.12 and nxt is not None and nxt.bold and len(nxt.text) > MAX_HEADING:
                continue    # the first line of a bold paragraph, not a heading
            prev = found[-1] if found else None
            if (prev and prev[0] == number and abs(prev[1].size - ln.size) < 0.2 and prev[1].bold == ln.bold
                    and 0 <= ln.top - prev[1].bottom < 0.6 * ln.size and not _MAJOR.match(text)):
                # A heading wrapped onto a second line.
                prev[1].segments = prev[1].segments + ln.segments
                prev[1].bottom = ln.bottom
                continue
            found.append((number, Line(ln.top, ln.bottom, ln.size, ln.bold, list(ln.segments))))
    # A style seen only on the first page (a cover's or title page's lettering) heads no section.
    later = {(-round(ln.size), -ln.bold) for number, ln in found if number > 1}
    # So does capitals-only lettering on the first page ("UNITED STATES SECURITIES AND EXCHANGE
    # COMMISSION", "FORM 10-Q"): a cover, whose words the title and identity already carry.
    found = [(n, ln) for n, ln in found
             if n > 1 or not later or ((-round(ln.size), -ln.bold) in later and not ln.text.isupper())]
    styles = sorted({(-round(ln.size), -ln.bold) for _, ln in found})
    out = []
    for number, ln in found:
        text = re.sub(r"\s+", " ", ln.text).strip()
        level = styles.index((-round(ln.size), -ln.bold)) + 2
        if re.match(r"PART [IVX]+\b", text, re.IGNORECASE):
            level = 0
        elif re.match(r"Item \d+[A-Z]?\.", text):
            level = 1
        out.append((number, text, level))
    return out


def line_key(line: str) -> str:
    return re.sub(r"\d+", "#", re.sub(r"\s+", " ", line.strip().lower()))


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def sections(page_texts: dict[int, str], found: list[tuple[int, str, int]], depth: int = 2) -> list[tuple[int, int, str]]:
    """``Document.metadata["sections"]`` entries: (page, offset in the page text, "H1 > H2").

    Two levels, not more: on the SEC filings the section part (then three levels) gained no source
    hits and cost 2.3 points of answer-number recall@5, as the context line takes room from the body
    (bench/results/sec-ablation.md); a shorter path keeps the heading for less."""
    out: list[tuple[int, int, str]] = []
    stack: list[tuple[int, str]] = []
    pos: dict[int, int] = {}
    for number, text, level in found:
        page = page_texts.get(number)
        if page is None:
            continue
        want = _squash(text)[:40]
        offset = None
        start = pos.get(number, 0)
        for m in re.finditer(r"[^\n]+", page[start:]):
            # A statement's title now opens its table block: "Table 2 (page 6): Consolidated ...".
            got = _squash(_TABLE_TITLE.sub("", m.group(0)))
            # PDFium may wrap the heading differently: its first line starts it, or it starts the line.
            if got and (got.startswith(want) or (len(got) >= 8 and want.startswith(got[:40]))):
                offset = start + m.start()
                break
        if offset is None:
            continue
        pos[number] = offset + 1
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, text[:MAX_PART]))
        out.append((number, offset, " > ".join(t for _, t in stack[-depth:])))
    return out
