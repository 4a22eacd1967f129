"""Plain text and Markdown."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.loaders import LoadError
from ingest.loaders._outline import Outline
from rag.settings import IngestSettings
from rag.types import Document, Page


def _read(path: Path) -> tuple[str, list[str]]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise LoadError(f"cannot read file: {e.strerror or e}") from e
    warnings = []
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        # Keep the readable text; say where the damage starts so the user can fix the file.
        text = raw.decode("utf-8", errors="replace")
        warnings.append(f"invalid UTF-8 at byte {e.start}: undecodable bytes replaced")
    text = text.replace("\x00", "")
    if not text.strip():
        raise LoadError("no text (file is blank)")
    return text, warnings


def load_text(path: Path, settings: IngestSettings) -> Document:
    text, warnings = _read(path)
    return Document(str(path), [Page(0, text)], {"format": "text"}, warnings)


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def load_markdown(path: Path, settings: IngestSettings) -> Document:
    text, warnings = _read(path)
    outline = Outline()
    offset, fenced, title = 0, False, None
    for line in text.splitlines(keepends=True):
        if _FENCE.match(line):
            fenced = not fenced    # "# comment" inside a code block is not a heading
        elif not fenced and (m := _HEADING.match(line.rstrip("\r\n"))):
            level = len(m.group(1))
            outline.heading(level, m.group(2), offset)
            if level == 1 and title is None:
                title = m.group(2)
        offset += len(line)
    meta = {"format": "markdown"}
    if title:
        meta["title"] = title
    return Document(str(path), [Page(0, text)], outline.into(meta), warnings)
