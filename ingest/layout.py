"""Page-layout clean-up that needs the whole document: running headers and footers.

They are taken out of the page text (repeated in every chunk they would crowd out the body and
make every chunk of a file look alike) but kept: the lines come back so the loader can put what
they say ("Apple Inc. | Q3 2023 Form 10-Q") into the context line each chunk carries.
"""

from __future__ import annotations

import re
from collections import Counter

EDGE_LINES = 2          # lines looked at on each edge (top and bottom) of a page
MIN_SHARE = 0.6         # a line is "running" when it repeats on at least this share of pages
MIN_PAGES = 3           # fewer pages than this cannot show a repetition


def _key(line: str) -> str:
    # Page numbers and dates differ from page to page; the words around them do not.
    return re.sub(r"\d+", "#", re.sub(r"\s+", " ", line.strip().lower()))


# Lines ingest itself writes for tables (caption, rows) repeat by design when a table runs over pages.
_OURS = re.compile(r"^\s*(\||Table \d+( \(page \d+\))?(:|$))")


def _edges(lines: list[str]) -> tuple[list[int], list[int]]:
    idx = [i for i, line in enumerate(lines) if line.strip()]
    return idx[:EDGE_LINES], idx[-EDGE_LINES:] if len(idx) > EDGE_LINES else []


def strip_running_lines(texts: list[str]) -> tuple[list[str], int]:
    """Drop header/footer lines repeated at the top or bottom of most pages.

    Args:
        texts: page texts in order; pages without text count towards the total but never match.

    Returns:
        the cleaned texts and the number of lines removed.
    """
    out, removed, _ = strip_running(texts)
    return out, removed


def strip_running(texts: list[str]) -> tuple[list[str], int, list[str]]:
    """:func:`strip_running_lines`, plus each running line as first seen (top ones first)."""
    pages = [t.splitlines() for t in texts]
    with_text = sum(1 for lines in pages if any(line.strip() for line in lines))
    if with_text < MIN_PAGES:
        return texts, 0, []
    top, bottom = Counter(), Counter()
    for lines in pages:
        head, foot = _edges(lines)
        top.update({_key(lines[i]) for i in head if not _OURS.match(lines[i])})
        bottom.update({_key(lines[i]) for i in foot if not _OURS.match(lines[i])})
    need = max(MIN_PAGES, MIN_SHARE * with_text)
    running_top = {k for k, n in top.items() if n >= need}
    running_bottom = {k for k, n in bottom.items() if n >= need}
    if not running_top and not running_bottom:
        return texts, 0, []
    out, removed, seen = [], 0, {}
    for lines, text in zip(pages, texts):
        head, foot = _edges(lines)
        drop = {i for i in head if _key(lines[i]) in running_top} | {i for i in foot if _key(lines[i]) in running_bottom}
        # A page that holds nothing but the repeated line keeps it: then it is the content (a
        # one-line page repeated, as in a rotated sample file), and removal would empty the page.
        if not drop or all(i in drop for i, line in enumerate(lines) if line.strip()):
            out.append(text)
            continue
        removed += len(drop)
        for i in sorted(drop):
            seen.setdefault((i not in head, _key(lines[i])), lines[i].strip())
        out.append("\n".join(line for i, line in enumerate(lines) if i not in drop))
    return out, removed, [seen[k] for k in sorted(seen, key=lambda k: k[0])]
