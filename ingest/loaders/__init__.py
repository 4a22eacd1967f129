"""File loaders: one module per format, one line per extension in ``LOADERS``.

A loader is ``load(path: Path, settings: IngestSettings) -> Document`` and raises
``LoadError`` with a one-line, user-facing reason when the file cannot be used.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from rag.settings import IngestSettings
from rag.types import Document

LOADERS: dict[str, str] = {
    ".pdf": "ingest.loaders.pdf:load_pdf",
    ".txt": "ingest.loaders.text:load_text",
    ".text": "ingest.loaders.text:load_text",
    ".md": "ingest.loaders.text:load_markdown",
    ".markdown": "ingest.loaders.text:load_markdown",
    ".docx": "ingest.loaders.docx:load_docx",
    ".html": "ingest.loaders.html:load_html",
    ".htm": "ingest.loaders.html:load_html",
    ".csv": "ingest.loaders.csv:load_csv",
}


class LoadError(Exception):
    """A file that cannot be ingested; the message is the reason shown to the user."""


def supported(path: Path) -> bool:
    return path.suffix.lower() in LOADERS


def load(path: Path, settings: IngestSettings) -> Document:
    """Parse one file with the loader registered for its extension.

    Raises:
        LoadError: unsupported, empty, too large, unreadable or unparsable file.
    """
    target = LOADERS.get(path.suffix.lower())
    if target is None:
        raise LoadError(f"unsupported file type '{path.suffix}' (supported: {', '.join(sorted(LOADERS))})")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise LoadError(f"cannot read file: {e.strerror or e}") from e
    if size == 0:
        raise LoadError("empty file (0 bytes)")
    if size > settings.max_file_mb * 1024 * 1024:
        raise LoadError(f"file is {size / 2**20:.0f} MB, over the {settings.max_file_mb:g} MB limit "
                        "(raise ingest.max_file_mb / RAGTUNE_INGEST__MAX_FILE_MB to allow it)")
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)(path, settings)
