"""Request bodies of the HTTP API (rag/server.py), checked before any handler runs.

Each check stands for a request that used to reach the store, the tokenizer or the response
encoder and come back as a bare 500. A body that fails one gets a 4xx whose message names the
field (``metadatas[0].page: ...``) and says what is accepted:

- text fields: not blank where a blank value means nothing to do (questions, texts);
- any string anywhere: valid Unicode (JSON may escape a lone UTF-16 surrogate such as
  ``"\\ud800"``; Python keeps it, and it cannot be encoded for SQLite, llama.cpp or the reply);
- any number anywhere: finite (Python's JSON parser accepts ``NaN`` and ``Infinity``);
- nesting at most ``MAX_DEPTH`` deep (``json.dumps`` of the stored metadata recurses);
- paths: no NUL byte, at most ``MAX_PATH_CHARS`` (the OS refuses both with an exception);
- pages: whole numbers in ``0..MAX_PAGE`` (stores keep them in 64-bit integer columns).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_DEPTH = 32
MAX_PATH_CHARS = 4096  # PATH_MAX on Linux; longer paths fail in the OS with ENAMETOOLONG
MAX_PAGE = 10**9
MAX_TOKENS = 8192


def _field(path: list[str | int]) -> str:
    """``["metadatas", 0, "page"]`` -> ``metadatas[0].page``."""
    out = ""
    for part in path:
        if isinstance(part, str):  # a key is user input too: show a lone surrogate as \ud800
            part = part.encode("utf-8", "backslashreplace").decode("utf-8")
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "body"


def check_json(value: Any) -> None:
    """Raise ``ValueError`` naming the first string, number or nesting level no backend can take.

    Iterative, so a body nested a thousand levels deep cannot exhaust the stack here.
    """
    todo: list[tuple[Any, list[str | int]]] = [(value, [])]
    while todo:
        item, path = todo.pop()
        if len(path) > MAX_DEPTH:
            raise ValueError(f"{_field(path)}: nested more than {MAX_DEPTH} levels deep; flatten it")
        if isinstance(item, str):
            _valid_unicode(item, path)
        elif isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{_field(path)}: must be a finite number, got {item}")
        elif isinstance(item, dict):
            for key, v in item.items():
                _valid_unicode(str(key), path + [str(key)])
                todo.append((v, path + [str(key)]))
        elif isinstance(item, list):
            todo.extend((v, path + [i]) for i, v in enumerate(item))


def _valid_unicode(text: str, path: list[str | int]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"{_field(path)}: holds an unpaired UTF-16 surrogate at character {e.start} "
                         "(\\ud800-\\udfff alone); send valid Unicode text") from None


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty or only whitespace")
    return text


NonBlank = Annotated[str, AfterValidator(_not_blank)]


class _Body(BaseModel):
    """A request body: every string, number and nesting level checked by :func:`check_json`."""

    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _json_a_backend_can_take(cls, data: Any) -> Any:
        check_json(data)
        return data


# Collections a request names: checked against the key's grant by rag.access.resolve (403 for one
# not granted); the name rules are rag.access's, so a bad name is a 400 naming it.
Collections = Annotated[list[str] | None, Field(None, max_length=64)]


class FilterIn(BaseModel):
    # extra="forbid": a misspelt field ("collection", "namespace") is a 422, not silently ignored
    model_config = ConfigDict(extra="forbid")

    source: str | list[str] | None = None
    page_min: int | None = Field(None, ge=0, le=MAX_PAGE)
    page_max: int | None = Field(None, ge=0, le=MAX_PAGE)
    collections: Collections = None


class Turn(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = ""


class AskIn(_Body):
    question: NonBlank
    k: int | None = Field(None, gt=0, le=100)
    mode: Literal["dense", "bm25", "hybrid", "mmr"] | None = None
    filter: FilterIn | None = None
    history: list[Turn] | None = None
    stream: bool = False
    max_new_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS)
    temperature: float | None = Field(None, ge=0, le=2)
    collections: Collections = None


class RetrieveIn(_Body):
    question: NonBlank
    k: int | None = Field(None, gt=0, le=100)
    mode: Literal["dense", "bm25", "hybrid", "mmr"] | None = None
    filter: FilterIn | None = None
    collections: Collections = None


class IngestIn(_Body):
    paths: list[str] | None = None
    texts: list[NonBlank] | None = None
    metadatas: list[dict[str, Any]] | None = None
    collection: str | None = Field(None, max_length=64)

    @field_validator("paths")
    @classmethod
    def _paths_the_os_accepts(cls, paths: list[str] | None) -> list[str] | None:
        for i, p in enumerate(paths or []):
            if "\x00" in p:
                raise ValueError(f"paths[{i}]: contains a NUL byte; give a file or folder name")
            if len(p) > MAX_PATH_CHARS:
                raise ValueError(f"paths[{i}]: {len(p)} characters, longer than the {MAX_PATH_CHARS} a path "
                                 "may have")
        return paths

    @field_validator("metadatas")
    @classmethod
    def _pages_are_whole_numbers(cls, metadatas: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, meta in enumerate(metadatas or []):
            if "collection" in meta:  # the body's "collection" field, checked against the key, decides
                raise ValueError(f"metadatas[{i}].collection: not accepted here; name the collection to write "
                                 "into with the top-level 'collection' field")
            if "page" in meta:
                page = meta["page"]
                digits = isinstance(page, str) and page.strip().isdecimal() and len(page.strip()) <= 10
                if digits or (isinstance(page, float) and page.is_integer()):
                    page = int(page)  # what int() in RAG.add_texts accepts, short of "abc"
                if isinstance(page, bool) or not isinstance(page, int) or not 0 <= page <= MAX_PAGE:
                    raise ValueError(f"metadatas[{i}].page: must be a whole number from 0 to {MAX_PAGE}, "
                                     f"got {meta['page']!r:.50}")
                meta["page"] = page
        return metadatas

    @model_validator(mode="after")
    def _something_to_ingest(self) -> IngestIn:
        if not self.paths and not self.texts:
            raise ValueError("paths: give 'paths' (files or folders inside the ingest root) or 'texts' "
                             "(strings)")
        if self.metadatas is not None and len(self.metadatas) != len(self.texts or []):
            raise ValueError(f"metadatas: {len(self.metadatas)} given for {len(self.texts or [])} texts; "
                             "give one per text, or none")
        return self


class KeyIn(_Body):
    """``POST /keys`` (rag/server_keys.py): what ``python -m rag keys create`` takes."""

    name: str = Field(max_length=64)
    role: Literal["reader", "writer", "admin"]
    collections: list[str] = Field(default_factory=list, max_length=64)
    expires: str | None = Field(None, max_length=40, description="30d, 12h, 90m, 2w, or an ISO date")


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatIn(_Body):
    model: str | None = None
    messages: list[Turn] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(None, ge=1, le=128)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, gt=0, le=MAX_TOKENS)
    stop: str | list[str] | None = None
    collections: Collections = None  # ragtune's own: the openai client sends it with extra_body

    @field_validator("stop")
    @classmethod
    def _stop_strings(cls, stop: str | list[str] | None) -> str | list[str] | None:
        strings = [stop] if isinstance(stop, str) else stop or []
        if len(strings) > 4 or any(not s for s in strings):
            raise ValueError("stop: up to 4 non-empty strings (as OpenAI's API accepts)")
        return stop

    def turns(self) -> list[dict[str, str]]:
        """User and assistant turns as text; system messages from the client cannot replace the
        chain's fixed system prompt, so they are dropped."""
        turns = [{"role": t.role, "content": text_of(t.content)} for t in self.messages]
        return [t for t in turns if t["role"] in ("user", "assistant")]

    @model_validator(mode="after")
    def _ends_with_a_question(self) -> ChatIn:
        turns = self.turns()
        if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
            raise ValueError("messages: the last user or assistant message must be from the user and "
                             "have non-blank content (the question)")
        return self


class ErrorOut(BaseModel):
    """A 4xx reply: ``detail`` names the field and what is accepted; ``errors`` lists each
    invalid field (422); ``error`` is OpenAI's shape (under ``/v1/`` only)."""

    detail: str
    errors: list[dict[str, Any]] | None = None
    error: dict[str, Any] | None = None
    type: str | None = None


def text_of(content: Any) -> str:
    """OpenAI content: a string or a list of parts; only text parts count."""
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")
