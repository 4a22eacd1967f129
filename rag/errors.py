"""User-facing errors. CLIs print ``error: <message>`` for these, without a traceback."""

from __future__ import annotations

import re


class RagtuneError(Exception):
    """Base class: something the user can fix, described in one message."""


class ConfigError(RagtuneError):
    """A setting, flag or spec is invalid."""


class ModelNotFoundError(RagtuneError):
    """A model (embedder, LLM, adapter) could not be located offline."""


class StoreError(RagtuneError):
    """A vector store is unreachable or refused an operation."""


class IndexMismatchError(StoreError):
    """The index was built with a different embedder / dimension / schema."""


class MissingDependencyError(RagtuneError):
    """An optional extra is not installed."""

    def __init__(self, what: str, extra: str, module: str | None = None):
        hint = f"pip install 'ragtune[{extra}]'"
        msg = f"{what} needs the optional extra [{extra}]"
        if module:
            msg += f" (module '{module}' is not installed)"
        super().__init__(f"{msg}: {hint}")
        self.extra = extra


class DataError(RagtuneError, ValueError):
    """Malformed input data (JSONL rows, documents): names the file, line and field."""


class LLMError(RagtuneError):
    """An LLM backend failed (auth, quota, timeout, model not found)."""


_PASSWORD_IN_URI = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@")
_SECRET_QUERY = re.compile(r"(?i)((?:api[_-]?key|password|token|secret)=)[^&\s]+")


def redact(text: str) -> str:
    """Strip passwords and secret query parameters from a URI or a message."""
    text = _PASSWORD_IN_URI.sub(lambda m: f"{m['scheme']}{m['user']}:***@", str(text))
    return _SECRET_QUERY.sub(r"\1***", text)
