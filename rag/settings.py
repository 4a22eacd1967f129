"""One typed settings tree, read as: defaults < ragtune.toml / --config < RAGTUNE_* env < flags.

Environment variables use ``RAGTUNE_`` plus the field path joined with ``__``, e.g.
``RAGTUNE_STORE``, ``RAGTUNE_RETRIEVAL__K=8``, ``RAGTUNE_LLM__SPEC=openai:gpt-4o-mini``.
Provider secrets (``OPENAI_API_KEY``, ``PINECONE_API_KEY``, ...) are read by the backends
that need them, straight from the environment, and never stored in this tree.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rag.errors import ConfigError
from rag.types import RetrievalMode

ENV_PREFIX = "RAGTUNE_"
DEFAULT_CONFIG_FILE = "ragtune.toml"
DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
DEFAULT_CHUNK_SIZE = 1000    # characters; the splitter, CLIs and the closed loop take these from here
DEFAULT_CHUNK_OVERLAP = 200


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IngestSettings(_Section):
    chunk_size: int = Field(DEFAULT_CHUNK_SIZE, gt=0, description="Target chunk size in characters.")
    chunk_overlap: int = Field(DEFAULT_CHUNK_OVERLAP, ge=0, description="Characters shared by neighbouring chunks.")
    batch_size: int = Field(64, gt=0, description="Chunks embedded per batch.")
    max_file_mb: float = Field(200.0, gt=0, description="Files larger than this are skipped (raise to allow).")
    max_pages: int = Field(5000, gt=0, description="PDFs with more pages are truncated to this many, with a warning.")
    file_timeout_s: float = Field(120.0, gt=0, description="A file whose parse takes longer is failed.")
    ocr: Literal["auto", "off", "force"] = Field("auto", description="OCR pages without a text layer when Tesseract exists.")
    ocr_lang: str = Field("eng", description="Tesseract language(s), e.g. 'eng+deu'.")
    passwords: list[str] = Field(default_factory=list, description="Passwords tried on encrypted PDFs (after the empty one).", repr=False)
    workers: int = Field(1, ge=0, description="Parser processes running beside embedding (0 = parse inline).")
    engine: Literal["local", "ray"] = Field("local", description="'local' = this process; 'ray' = parse and embed on a Ray cluster (ingest/ray_engine.py).")
    ray_address: str | None = Field(None, description="Ray cluster address for engine 'ray' (default: RAY_ADDRESS, else a local Ray).")


class RetrievalSettings(_Section):
    mode: RetrievalMode = Field("hybrid", description="Retrieval method.")
    k: int = Field(5, gt=0, description="Passages handed to the LLM.")
    fetch_k: int = Field(30, gt=0, description="Candidates fetched per method before fusion / MMR.")
    mmr_lambda: float = Field(0.5, ge=0, le=1, description="MMR trade-off: 1 = relevance only, 0 = diversity only.")
    rrf_k: int = Field(60, gt=0, description="Reciprocal-rank-fusion constant.")
    dense_weight: float = Field(0.5, ge=0, le=1, description="Weight of the dense side in hybrid fusion.")
    doc_prior: float = Field(0.3, ge=0, le=1, description=(
        "Hybrid: weight of how well the question names a chunk's document (BM25 over each document's "
        "context-line identity: company, form, period, title; rag/doc_prior.py); 0 = off."))
    reranker: str | None = Field(None, description="Cross-encoder model id or path for re-ranking (off if unset).")
    sentences: int = Field(10, ge=0, description=(
        "Sentences the LLM reads: the N of the k passages most similar to the question, in passage order "
        "(rag/selection.py); 0 = the whole passages."))


class LLMSettings(_Section):
    spec: str = Field("", description="LLM spec: '' (the best installed catalogue model), a catalogue name, hf:ID[+adapter:DIR], adapter:DIR, gguf:PATH, openai:MODEL.")
    temperature: float = Field(0.0, ge=0, description="0 = greedy decoding.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling when temperature > 0.")
    max_new_tokens: int = Field(256, gt=0, description="Token limit for one answer.")
    repeat_penalty: float = Field(1.0, ge=1.0, le=2.0, description=(
        "Penalty on tokens already generated, for local models (llama.cpp repeat_penalty, transformers "
        "repetition_penalty); 1 = off. The chain also cuts an answer at its first repeated sentence."))
    context_window: int | None = Field(None, description="Override the model's context window (tokens).")
    timeout_s: float = Field(60.0, gt=0, description="Timeout for hosted API calls.")
    max_retries: int = Field(3, ge=0, description="Retries with backoff for hosted API calls.")
    trust_remote_code: bool = Field(False, description="Allow model repos to run their own code (off by default).")
    threads: int | None = Field(None, description="CPU threads for local inference (default for llama.cpp: chosen "
                                                   "per request, the cores other processes leave free; "
                                                   "see rag.llms.threads).")


class ServerSettings(_Section):
    host: str = Field("127.0.0.1", description="Bind address; loopback by default.")
    port: int = Field(8000, gt=0, lt=65536)
    max_request_bytes: int = Field(1_000_000, gt=0, description="Larger request bodies are refused (413).")
    ingest_roots: list[Path] = Field(default_factory=list, description=(
        "POST /ingest may read server-side paths only inside these folders (default: the current folder; "
        "with authentication on, none until one is set)."))


class AuthSettings(_Section):
    required: bool = Field(False, description="Require a key even before any exists (auth is on anyway once "
                                              "a key is created with `python -m rag keys create`).")
    requests_per_minute: float = Field(120, ge=0, description="Requests one key may make per minute (0 = no limit).")
    burst: int = Field(30, gt=0, description="Requests one key may make at once after a quiet spell.")
    failed_per_minute: float = Field(10, ge=0, description="Failed authentications per client address per minute "
                                                           "before every attempt from it gets 429 (0 = no limit).")
    failed_burst: int = Field(20, gt=0, description="Failed authentications allowed at once from one address.")


class AuditSettings(_Section):
    enabled: bool = Field(True, description="With authentication on, append each request to DATA_DIR/audit.jsonl.")
    log_questions: bool = Field(False, description="Also record the question text (as sensitive as the documents).")


class Settings(_Section):
    data_dir: Path = Field(Path(".ragtune"), description="Where the index, caches, adapters and runs live.")
    models_dir: Path = Field(Path("~/.cache/ragtune/models"), description="Model cache: catalogue models "
                             "assembled or pulled by `python -m rag models pull` (shared across projects).")
    store: str | None = Field(None, description="Vector store URI; default: the embedded store under data_dir.")
    embedder: str = Field(DEFAULT_EMBEDDER, description="Sentence-transformers model id or path.")
    device: str = Field("cpu", description="Torch device for local models ('cpu', 'cuda', 'auto').")
    embedder_precision: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Embedder matmul precision; 'auto' = bf16 autocast on CPUs with AMX/AVX512-BF16 "
                               "(bench/results/LATEST.md has its speed and quality figures).")
    # "auto" picks the fastest runtime that passed bench/embedder_bench.py's quality gates (OpenVINO
    # static int8 on CPUs where the extra is installed; torch elsewhere and on GPUs).
    embedder_backend: Literal["auto", "torch", "openvino"] = Field(
        "auto", description="Embedder runtime: 'openvino' runs an export built once in models_dir/exports "
                            "(pip install 'ragtune[openvino]'); 'auto' (default) = openvino on CPUs where it "
                            "is installed, else torch. docs/embedders.md compares them.")
    embedder_quantization: Literal["auto", "none", "int8"] = Field(
        "auto", description="'int8' = static int8 (openvino backend only), calibrated on your first chunks; "
                            "'auto' (default) = what the bench picked for the backend: int8 on openvino, "
                            "none on torch (docs/embedders.md).")
    embedder_threads: int | None = Field(None, gt=0, description="CPU threads for the embedder (default: the runtime's).")
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    tracking_uri: str | None = Field(None, description="MLflow tracking URI; default sqlite under data_dir.")

    @property
    def store_uri(self) -> str:
        return self.store or str(self.data_dir / "index")


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# RAGTUNE_* variables that are not settings: read by the CLIs, scripts/pg.sh, scripts/setup.sh
# and the tests. Any other RAGTUNE_* name must be a setting, so a typo is reported, not ignored.
NOT_SETTINGS = ("DEBUG", "CONFIG", "PG_PORT", "PG_DIR", "PYTHON")
NOT_SETTINGS_PREFIX = "TEST_"


def _env_tree(env: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        short = name[len(ENV_PREFIX):]
        if short in NOT_SETTINGS or short.startswith(NOT_SETTINGS_PREFIX):
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def _unflatten(flags: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ``{"retrieval.k": 3, "store": None}`` into a nested dict, dropping None (flag not given)."""
    tree: dict[str, Any] = {}
    for dotted, value in flags.items():
        if value is None:
            continue
        node = tree
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return tree


def load_settings(config: str | Path | None = None, *, env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the settings tree from every layer.

    Args:
        config: a TOML file; default ``ragtune.toml`` in the current directory when it exists.
        env: the environment to read (default ``os.environ``); tests pass their own.
        overrides: flag values keyed by dotted path (``"retrieval.k"``); ``None`` means not given.

    Raises:
        ConfigError: listing every invalid field with where it came from.
    """
    env = os.environ if env is None else env
    layers: list[tuple[str, dict[str, Any]]] = []
    path = Path(config) if config else Path(env.get(ENV_PREFIX + "CONFIG", DEFAULT_CONFIG_FILE))
    if config or path.exists():
        try:
            layers.append((str(path), tomllib.loads(path.read_text(encoding="utf-8"))))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from e
    layers.append(("environment", _env_tree(env)))
    layers.append(("flags", _unflatten(overrides or {})))
    merged: dict[str, Any] = {}
    for _, layer in layers:
        merged = _deep_merge(merged, layer)
    try:
        return Settings.model_validate(merged)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            field = ".".join(str(p) for p in err["loc"])
            origin = next((name for name, layer in reversed(layers) if _has_path(layer, err["loc"])), "defaults")
            if origin == "environment":  # name the variable the user has to fix or unset
                origin = "environment variable " + ENV_PREFIX + "__".join(str(p) for p in err["loc"]).upper()
            problems.append(f"  {field}: {err['msg']} (from {origin})")
        raise ConfigError("invalid settings:\n" + "\n".join(problems)) from None


def _has_path(tree: Mapping[str, Any], loc: tuple) -> bool:
    node: Any = tree
    for part in loc:
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def save_setting(path: str | Path, dotted: str, value: Any) -> None:
    """Write one setting into a TOML settings file, keeping the others (used by eval's bake-off)."""
    import tomli_w

    path = Path(path)
    data = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
