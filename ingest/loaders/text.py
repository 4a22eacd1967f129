"""Plain text and Markdown."""

from __future__ import annotations

import re
from pathlib import Path

from ingest.loaders import LoadError
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


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$", re.MULTILINE)


def load_markdown(path: Path, settings: IngestSettings) -> Document:
    text, warnings = _read(path)
    title = next((m.group(2) for m in _HEADING.finditer(text) if len(m.group(1)) == 1), None)
    meta = {"format": "markdown"}
    if title:
        meta["title"] = title
    return Document(str(path), [Page(0, text)], meta, warnings)
