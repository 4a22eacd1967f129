"""Streamlit pieces for ``ui/app.py`` and ``ui/pages/``: settings sidebar, answers, uploads.

Presentation only: everything that does work is a call into :class:`rag.RAG` (or
``finetune.adapters`` / the files ``python -m eval --out`` wrote). Text that comes from documents
or models is shown escaped (``st.text`` / ``st.code`` / markdown with every special character
backslash-escaped), never as HTML.
"""

from __future__ import annotations

import contextlib
import re
import traceback
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import streamlit as st

from rag.errors import RagtuneError, redact
from rag.llms.adapter_meta import ADAPTER_META
from rag.settings import Settings, load_settings
from rag.types import MODES

UPLOAD_TYPES = ("pdf", "txt", "md")
DEFAULT = "Default local model (the best installed)"
HOSTED = "OpenAI-compatible API (openai:)"
CUSTOM = "Custom spec"

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=^\"'])")


# -- escaping and errors ------------------------------------------------------------------------
def md_escape(text: str) -> str:
    """Text made inert for ``st.markdown`` and widget labels: every markdown / HTML / Streamlit
    directive character is backslash-escaped, line breaks are kept."""
    return _MD_SPECIAL.sub(r"\\\1", str(text)).replace("\n", "  \n")


def error_message(e: BaseException, where: str = "") -> str:
    """What the page says about an exception: its message, redacted, never a traceback."""
    prefix = f"{where}: " if where else ""
    if isinstance(e, RagtuneError):
        msg = str(e)
    else:  # an unexpected failure: still a message, the traceback goes to the server log
        traceback.print_exception(e)
        msg = f"{type(e).__name__}: {e}"
    return redact(prefix + msg)


def show_error(e: BaseException, where: str = "") -> str:
    """One ``st.error`` with the message (redacted); no traceback in the page. Returns the message."""
    msg = error_message(e, where)
    st.error(md_escape(msg))
    return msg


@contextlib.contextmanager
def guarded(where: str = "") -> Iterator[None]:
    """Run a block; any exception becomes :func:`show_error` instead of a stack trace."""
    try:
        yield
    except Exception as e:  # noqa: BLE001 - the page must survive every error
        show_error(e, where)


# -- settings and the RAG instance --------------------------------------------------------------
def base_settings() -> Settings:
    """Defaults < ragtune.toml < RAGTUNE_* environment, as the CLIs read them."""
    return load_settings()


@st.cache_resource(show_spinner=False, max_entries=4)
def _rag_for(settings_json: str):
    from rag.api import RAG

    return RAG(settings=Settings.model_validate_json(settings_json))


def get_rag(settings: Settings):
    """The :class:`rag.RAG` for these settings, built once per process and reused by every rerun
    and session (its embedder, store and LLM load on first use and stay loaded)."""
    return _rag_for(settings.model_dump_json())


@st.cache_data(ttl=30, show_spinner=False)
def list_adapters(data_dir: str, tracking_uri: str | None) -> list[dict[str, Any]]:
    """Adapters under DATA_DIR/adapters (and the MLflow registry), via ``finetune.adapters``."""
    try:
        from finetune.adapters import list_adapters as _list
    except ImportError:  # finetune not installed: read the metadata files directly
        return _adapter_files(Path(data_dir))
    return _list(data_dir, tracking_uri)


def _adapter_files(data_dir: Path) -> list[dict[str, Any]]:
    import json

    rows = []
    for f in sorted((data_dir / "adapters").glob(f"**/{ADAPTER_META}")):
        try:
            meta = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        rows.append({"path": str(f.parent.resolve()), "base": meta.get("base_model"),
                     "created": meta.get("created"), **(meta.get("metrics") or {})})
    return rows


def adapter_spec(row: dict[str, Any]) -> str:
    """The LLM spec that loads an adapter on its recorded base model."""
    base = str(row.get("base") or "smollm2")
    base = base.removeprefix("hf:")
    return f"hf:{base}+adapter:{row['path']}"


def _remember(key: str, value: Any) -> Any:
    # Widget state is dropped when another page is shown; this copy restores the choice after.
    st.session_state.setdefault("_ui_cfg", {})[key] = value
    return value


def _recalled(key: str, default: Any) -> Any:
    return st.session_state.get("_ui_cfg", {}).get(key, default)


def sidebar(base: Settings, *, locked: bool = False) -> tuple[Settings, dict[str, Any]]:
    """Settings widgets. Returns the settings for the RAG instance (store, LLM) and the per-call
    options (k, mode, temperature, max_new_tokens), which change nothing that is loaded.
    ``locked``: the store and LLM stay as configured (a signed-in reader or writer)."""
    sb = st.sidebar
    sb.header("Settings")
    if locked:
        store = base.store or ""
    else:
        store = sb.text_input("Store URI", value=_recalled("store", base.store or ""), key="store",
                              placeholder=f"default: {base.store_uri}",
                              help="Empty = the embedded store under the data directory. "
                                   "pgvector://, milvus://, qdrant://, pinecone://, weaviate:// ...")
        _remember("store", store)
    c1, c2 = sb.columns([3, 2])
    mode = c1.selectbox("Retrieval", MODES, key="mode",
                        index=MODES.index(_recalled("mode", base.retrieval.mode)))
    k = c2.number_input("k", 1, 50, int(_recalled("k", base.retrieval.k)), key="k")
    _remember("mode", mode), _remember("k", k)

    spec = base.llm.spec if locked else _llm_choice(sb, base)
    temperature = sb.slider("Temperature", 0.0, 2.0, float(_recalled("temperature", base.llm.temperature)),
                            0.05, key="temperature")
    max_tokens = sb.number_input("Max new tokens", 1, 8192,
                                 int(_recalled("max_tokens", base.llm.max_new_tokens)), key="max_tokens")
    _remember("temperature", temperature), _remember("max_tokens", max_tokens)

    data = base.model_dump()
    data["store"] = store.strip() or None
    data["llm"]["spec"] = spec
    settings = Settings.model_validate(data)
    opts = {"k": int(k), "mode": mode, "temperature": float(temperature), "max_new_tokens": int(max_tokens)}
    return settings, opts


def _llm_choice(sb: Any, base: Settings) -> str:
    adapters: dict[str, str] = {}
    with guarded("listing adapters"):
        for row in list_adapters(str(base.data_dir), base.tracking_uri):
            label = f"adapter: {Path(row['path']).name} on {row.get('base') or 'smollm2'}"
            adapters[label] = adapter_spec(row)
    from rag import catalogue

    local: dict[str, str] = {}
    with guarded("listing local models"):
        for row in catalogue.rows(catalogue.models_dir(base)):
            if row["status"] != "not installed" and not row["name"].startswith("hf:"):
                local[f"local: {row['name']} ({row['parameters']})"] = row["name"]
    choices = [DEFAULT, *local, *adapters, HOSTED, CUSTOM]
    initial = _recalled("llm_choice", None)
    if initial not in choices:
        wanted = catalogue.lookup(base.llm.spec) if base.llm.spec else None
        named = next((label for label, name in local.items() if wanted and wanted.name == name), None)
        initial = DEFAULT if not base.llm.spec else named or (
            HOSTED if base.llm.spec.startswith("openai:") else CUSTOM)
    choice = sb.selectbox("LLM", choices, index=choices.index(initial), key="llm_choice",
                          help="The default local model, a named one (python -m rag models list), one with an "
                               "adapter trained by python -m finetune.qlora, or a hosted model.")
    _remember("llm_choice", choice)
    if choice == DEFAULT:
        return ""
    if choice in local:
        return local[choice]
    if choice in adapters:
        return adapters[choice]
    if choice == HOSTED:
        default = base.llm.spec.removeprefix("openai:") if base.llm.spec.startswith("openai:") else "gpt-4o-mini"
        model = sb.text_input("Model", value=_recalled("openai_model", default), key="openai_model",
                              help="Uses OPENAI_API_KEY and OPENAI_BASE_URL from the environment.")
        _remember("openai_model", model)
        return f"openai:{model.strip()}"
    spec = sb.text_input("Spec", value=_recalled("custom_spec", base.llm.spec), key="custom_spec",
                         placeholder="hf:ID+adapter:DIR, gguf:PATH, openai:MODEL")
    _remember("custom_spec", spec)
    return spec.strip()


def index_status(rag: Any, collections: list[str] | None = None) -> None:
    """What the index holds (in ``collections`` only, when given) and which parts are loaded."""
    sb = st.sidebar
    sb.subheader("Index")
    try:
        stats = rag.stats() if collections is None else rag.stats(collections=collections)
    except Exception as e:  # noqa: BLE001
        with sb:
            show_error(e, "store")
        return
    c1, c2 = sb.columns(2)
    c1.metric("Files", stats["files"])
    c2.metric("Chunks", stats["chunks"])
    sb.caption(md_escape(f"store: {stats['store']}\nembedder: {stats.get('embedder') or '-'} "
                         f"({stats.get('dim') or '-'} d)"))
    llm = rag.loaded().get("llm")
    llm = _short_paths(llm) if llm is not None else "not loaded yet (loads with the first question)"
    sb.caption(md_escape(f"LLM: {llm}"))


def _short_paths(spec: str) -> str:
    """``gguf:/long/path/model.gguf`` -> ``gguf:…/model.gguf`` for display."""
    return re.sub(r"(?<=[:+])/(?:[^/\s+]+/)+", "…/", spec)


# -- answers ------------------------------------------------------------------------------------
def history_for(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Earlier turns as ``rag.chat`` takes them (failed turns left out)."""
    return [{"role": m["role"], "content": m["content"]} for m in messages
            if m.get("content") and not m.get("error")]


def stream_answer(rag: Any, question: str, history: list[dict[str, str]], opts: dict[str, Any]) -> dict:
    """Stream one answer into the page; returns ``Answer.to_dict()``, or ``{"error": message}``."""
    box = st.empty()
    try:
        with st.spinner("Searching and loading the model..." if rag.loaded().get("llm") is None else "Searching..."):
            streaming = rag.stream(question, history=history or None, **opts)
        text = ""
        for piece in streaming:
            text += piece
            box.markdown(md_escape(text) + "▌")
        answer = streaming.answer.to_dict()
    except Exception as e:  # noqa: BLE001
        box.empty()
        return {"error": show_error(e)}
    box.empty()
    render_answer(answer)
    return answer


_FLAG_TEXT = {
    "no_citations": "The model cited no passage; the passage sharing most words with the answer is shown as the implicit source.",
    "declined": "The model said the passages do not answer this.",
    "no_passages": "Nothing in the index matches this question.",
}


def render_answer(answer: dict[str, Any]) -> None:
    """The answer text, its citation checks and its numbered sources (each expandable)."""
    st.markdown(md_escape(answer["answer"]) if answer["answer"] else "_(empty answer)_")
    cited = answer.get("citations") or []
    if answer.get("standalone_question") and answer["standalone_question"] != answer.get("question"):
        st.caption("Searched for: " + md_escape(answer["standalone_question"]))
    if answer.get("invalid_citations"):
        st.warning("Invalid citations (no such passage): "
                   + md_escape(" ".join(f"[{n}]" for n in answer["invalid_citations"])))
    if answer.get("unsupported"):
        st.warning("Sentences whose cited passages do not support them:")
        for item in answer["unsupported"]:
            st.text(f"{item['sentence']}  (cites {', '.join(str(n) for n in item['citations'])})")
    for flag in answer.get("flags") or []:
        if flag in _FLAG_TEXT:
            st.info(_FLAG_TEXT[flag])
    if answer.get("dropped"):
        st.caption(f"{answer['dropped']} lower-ranked passages did not fit the context window.")
    sources = answer.get("sources") or []
    if sources:
        marks = " ".join(f"\\[{n}\\]" for n in cited) or "none"
        st.caption(f"Sources ({len(sources)}) · cited: {marks}")
    for s in sources:
        render_source(s)
    t = answer.get("timings") or {}
    if t.get("total_s"):
        st.caption(f"{t['total_s']:.1f} s · {answer.get('tokens', {}).get('completion', 0)} tokens")


def render_source(s: dict[str, Any]) -> None:
    mark = " · cited" if s.get("cited") else (" · implicit" if s.get("implicit") else "")
    page = f" · page {s['page']}" if s.get("page") else ""
    label = md_escape(f"[{s['n']}] {Path(str(s['source'])).name}{page} · score {s['score']:.3f}") + mark
    with st.expander(label):
        st.caption(md_escape(f"file: {s['source']}" + (f" · page {s['page']}" if s.get("page") else "")))
        st.text(s.get("text") or "")


# -- uploads ------------------------------------------------------------------------------------
def safe_filename(name: str, max_len: int = 120) -> str:
    """A plain file name for an uploaded file: no folders, no dot-files, no control or shell
    characters; the extension is kept and lower-cased."""
    name = unicodedata.normalize("NFKC", str(name)).replace("\\", "/").split("/")[-1]
    name = re.sub(r"[^\w. -]", "_", name, flags=re.ASCII).strip(" .")
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    stem = stem.strip(" .") or "upload"
    ext = ext.lower()
    room = max_len - len(ext) - 1
    return f"{stem[:room].rstrip(' .') or 'upload'}.{ext}" if ext else stem[:max_len]


def save_upload(name: str, data: bytes, folder: Path) -> Path:
    """Write an uploaded file into ``folder`` under its sanitised name (replacing an older copy).

    Raises:
        ValueError: the type is not one the ingester reads, or the name escapes the folder.
    """
    clean = safe_filename(name)
    if Path(clean).suffix.lower().lstrip(".") not in UPLOAD_TYPES:
        raise ValueError(f"{name!r}: only {', '.join('.' + t for t in UPLOAD_TYPES)} files can be ingested")
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / clean).resolve()
    if path.parent != folder.resolve():
        raise ValueError(f"{name!r}: not a plain file name")
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def upload_section(rag: Any, collection: str | None = None) -> None:
    """Sidebar: upload files, save them under DATA_DIR/uploads (``uploads/COLLECTION`` when one is
    named) and ingest them into that collection with a progress bar."""
    sb = st.sidebar
    sb.subheader("Add documents")
    files = sb.file_uploader("PDF, text or Markdown", type=list(UPLOAD_TYPES), accept_multiple_files=True,
                             key=f"uploads_{st.session_state.get('upload_round', 0)}")
    if not sb.button("Ingest", disabled=not files, type="primary", key="ingest"):
        return
    folder = Path(rag.settings.data_dir) / "uploads" / (collection or "")
    paths, rejected = [], []
    for f in files:
        try:
            paths.append(save_upload(f.name, f.getvalue(), folder))
        except (ValueError, OSError) as e:
            rejected.append({"file": f.name, "status": "failed", "pages": 0, "chunks": 0,
                             "reason": str(e), "warnings": ""})
    bar = sb.progress(0.0, text=f"ingesting {len(paths)} files")
    rows: list[dict[str, Any]] = []

    def on_file(report: Any) -> None:
        rows.append({"file": report.source, "status": report.status, "pages": report.pages,
                     "chunks": report.chunks, "reason": report.reason, "warnings": "; ".join(report.warnings)})
        done = min(len(rows), len(paths))
        bar.progress(done / max(len(paths), 1), text=md_escape(f"{done}/{len(paths)} · {report.source}"))

    summary = None
    with guarded("ingest"):
        if paths:
            into = {"collection": collection} if collection else {}
            summary = rag.ingest([str(p) for p in paths], on_file=on_file, **into).summary()
    bar.empty()
    st.session_state["last_ingest"] = {"rows": rows + rejected, "summary": summary}
    st.session_state["upload_round"] = st.session_state.get("upload_round", 0) + 1  # clear the uploader
    st.rerun()


def ingest_report() -> None:
    """The last ingest's per-file summary (pages, chunks, warnings) and its failures with reasons."""
    last = st.session_state.get("last_ingest")
    if not last:
        return
    rows = last["rows"]
    failed = [r for r in rows if r["status"] == "failed"]
    s = last.get("summary") or {}
    title = (f"Last ingest: {s.get('added', 0)} added, {s.get('updated', 0)} updated, "
             f"{s.get('unchanged', 0)} unchanged, {len(failed)} failed, {s.get('chunks', 0)} chunks")
    with st.expander(md_escape(title), expanded=bool(failed)):
        for r in failed:
            st.error(md_escape(f"{r['file']}: {r['reason']}"))
        st.dataframe(rows, hide_index=True,
                     column_order=["file", "status", "pages", "chunks", "warnings", "reason"])
        if st.button("Dismiss", key="dismiss_ingest"):
            del st.session_state["last_ingest"]
            st.rerun()
