"""OpenVINO embedder: the same sentence-transformers model, run by OpenVINO from an export in the
model cache (``rag.embedders.export``), in fp32/bf16 or as a static int8 model (NNCF).

The export traces the whole sentence-transformers pipeline (transformer, pooling, any dense and
normalize modules) into one OpenVINO graph, offline, from the local model folder; the tokenizer
stays the model folder's own. Static int8 is calibrated on the first texts this embedder is asked
to embed (the user's own chunks), topped up with the public-domain passages shipped in
``calibration.jsonl``; an embedder whose first call is a query calibrates on the shipped passages
alone. Never a hub dataset. bench/embedder_bench.py measures speed and vector agreement,
bench/retrieval_bench.py retrieval quality; docs/embedders.md has the figures and the rules.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from rag.embedders.export import ensure_export, export_key
from rag.errors import ConfigError, MissingDependencyError, ModelNotFoundError
from rag.model_paths import embedder_id_for, resolve_embedder

QUANTIZATIONS = ("none", "int8")
WEIGHTS = {"none": "fp32", "int8": "int8"}
IR_FILES = {"fp32": "openvino_model.xml", "int8": "openvino_model_int8.xml"}
CALIBRATION = Path(__file__).with_name("calibration.jsonl")
CALIBRATION_SAMPLES = 300


def shipped_calibration() -> list[str]:
    """The calibration passages that ship with ragtune (public-domain text, see docs/embedders.md)."""
    with open(CALIBRATION, encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


def calibration_texts(user: list[str] | None, n: int = CALIBRATION_SAMPLES) -> tuple[list[str], dict]:
    """Up to ``n`` passages: the user's own (distinct, non-blank) first, then the shipped ones."""
    own = [t for t in dict.fromkeys(user or []) if t.strip()][:n]
    shipped = shipped_calibration()[: n - len(own)]
    return own + shipped, {"user_passages": len(own), "shipped_passages": len(shipped)}


def model_folder(name: str) -> str:
    """The local folder an export is made from (a hub id only from the local hub cache)."""
    path = resolve_embedder(name)
    if os.path.isdir(path):
        return path
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(path, local_files_only=True)
    except Exception as e:  # not cached locally: the same message either way
        raise ModelNotFoundError(f"the openvino embedder backend needs '{name}' as a local folder or in the "
                                 f"local hub cache ({e.__class__.__name__}); give a folder path") from e


def _traced(folder: str):
    """(OpenVINO model of the whole sentence-transformers pipeline, its tokenizer, its max length)."""
    import openvino as ov
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(folder, device="cpu")
    names = list(st.tokenizer.model_input_names)

    class Pipeline(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.st = st

        def forward(self, *args):
            return self.st(dict(zip(names, args)))["sentence_embedding"]

    example = st.tokenizer(["an example sentence", "a second, somewhat longer example sentence"],
                           padding=True, return_tensors="pt")
    with torch.no_grad():
        model = ov.convert_model(Pipeline().eval(), example_input=tuple(example[n] for n in names),
                                 input=[(ov.PartialShape([-1, -1]), ov.Type.i64) for _ in names])
    for port, name in zip(model.inputs, names):
        port.get_tensor().set_names({name})
    return model, st.tokenizer, int(st.max_seq_length or 512)


def _build(folder: str, weights: str, calibration):
    def build(out: Path) -> dict:
        import openvino as ov

        model, tok, max_len = _traced(folder)
        if weights != "int8":
            ov.save_model(model, str(out / IR_FILES["fp32"]), compress_to_fp16=False)
            return {}
        try:
            import nncf
        except ImportError as e:
            raise MissingDependencyError("the int8 openvino embedder export", "openvino", e.name) from e

        texts, counts = calibration()
        # One unpadded passage per sample, tokenized exactly as at inference time.
        items = [dict(tok([t], truncation=True, max_length=max_len, return_tensors="np")) for t in texts]
        quantized = nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(items))
        ov.save_model(quantized, str(out / IR_FILES["int8"]), compress_to_fp16=False)
        return {"calibration": counts}

    return build


class OpenVINOEmbedder:
    """Sentence-transformers through OpenVINO; documents and queries share one compiled model."""

    backend = "openvino"

    def __init__(self, name: str, *, device: str = "cpu", batch_size: int = 32, precision: str = "auto",
                 quantization: str = "none", cache_dir: str | Path | None = None, threads: int | None = None,
                 log=None):
        from rag.embedders.sentence_transformers import resolve_precision

        if device not in ("cpu", "auto"):
            raise ConfigError(f"the openvino embedder backend runs on the CPU only (device '{device}'); "
                              "use embedder_backend = 'torch' for GPUs")
        if quantization not in QUANTIZATIONS:
            raise ConfigError(f"unknown embedder quantization '{quantization}' (known: {', '.join(QUANTIZATIONS)})")
        try:
            import openvino  # noqa: F401 - nncf (~3 s to import) only when an int8 export is built
        except ImportError as e:
            raise MissingDependencyError("the openvino embedder backend", "openvino", e.name) from e
        self.folder = model_folder(name)
        self.id = embedder_id_for(name)
        self.quantization = quantization
        self.weights = WEIGHTS[quantization]
        self.precision = "int8" if quantization == "int8" else resolve_precision(precision, "cpu")
        # Activations between int8 layers stay fp32 unless bf16 is asked for explicitly: on an
        # AVX512-BF16 CPU without AMX, int8 with fp32 activations measured 1.3x int8 with bf16 ones
        # (bench/results/embedders.md). Without int8, "auto" = bf16 where the CPU has it natively.
        resolved = resolve_precision(precision, "cpu")   # also rejects an unknown precision
        wanted = precision if quantization == "int8" else resolved
        self._hint = "bf16" if wanted == "bfloat16" else "f32"
        self.batch_size = batch_size
        self.threads = threads
        self.cache_dir = Path(cache_dir or Path("~/.cache/ragtune/models/exports")).expanduser()
        self.key = export_key(self.folder, self.backend, self.weights)
        self.log = log or (lambda m: None)
        self.model = None
        self.export_dir: Path | None = None
        self._lock = threading.Lock()
        self.calls = 0
        self._tokenizer, self.dim, self.max_tokens = _describe(self.folder)

    @property
    def runtime(self) -> dict:
        return {"embedder_backend": self.backend, "embedder_precision": self.precision}

    def load(self, calibration: list[str] | None = None) -> None:
        """Export (first use only) and compile; ``calibration`` = the user's texts for int8."""
        with self._lock:
            if self.model is not None:
                return
            import openvino as ov

            self.export_dir = ensure_export(self.cache_dir, self.id, self.key,
                                            _build(self.folder, self.weights, lambda: calibration_texts(calibration)),
                                            log=self.log)
            config = {"INFERENCE_PRECISION_HINT": self._hint}
            if self.threads:
                config["INFERENCE_NUM_THREADS"] = int(self.threads)
            model = ov.Core().compile_model(str(self.export_dir / IR_FILES[self.weights]), "CPU", config)
            dim = model.outputs[0].get_partial_shape()[-1]
            if dim.is_static and dim.get_length() != self.dim:
                raise ModelNotFoundError(f"embedder export {self.export_dir} gives {dim}-dim vectors, "
                                         f"the model folder says {self.dim}: delete that folder to rebuild it")
            self._inputs = {p.get_any_name() for p in model.inputs}
            self.model = model

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load(calibration=texts)
        self.calls += len(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Longest first, like sentence-transformers: each batch pads to similar lengths.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        request = self.model.create_infer_request()
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            enc = self._tokenizer([texts[j] for j in idx])
            vecs = request.infer({k: v for k, v in enc.items() if k in self._inputs})[0]
            out[idx] = vecs
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self._tokenizer.ids(texts)]


class _Tokenizer:
    """The model folder's ``tokenizer.json`` through the ``tokenizers`` library: the same ids as
    transformers' fast tokenizer, without importing transformers (which imports torch, ~4 s)."""

    def __init__(self, path: Path, max_len: int):
        from tokenizers import Tokenizer

        self.count = Tokenizer.from_file(str(path))
        self.count.no_truncation()
        self.count.no_padding()
        self.batch = Tokenizer.from_file(str(path))
        self.batch.enable_truncation(max_len)
        pad = self.batch.padding or {}
        self.batch.enable_padding(pad_id=pad.get("pad_id", 0), pad_type_id=pad.get("pad_type_id", 0),
                                  pad_token=pad.get("pad_token", "[PAD]"))

    def ids(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.count.encode_batch(texts)]

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        enc = self.batch.encode_batch(texts)
        return {"input_ids": np.array([e.ids for e in enc], dtype=np.int64),
                "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
                "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64)}


class _HFTokenizer:
    """Fallback for model folders without a ``tokenizer.json``."""

    def __init__(self, folder: str, max_len: int):
        from transformers import AutoTokenizer

        self.tok, self.max_len = AutoTokenizer.from_pretrained(folder), max_len

    def ids(self, texts: list[str]) -> list[list[int]]:
        return self.tok(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]

    def __call__(self, texts: list[str]) -> dict[str, np.ndarray]:
        return dict(self.tok(texts, padding=True, truncation=True, max_length=self.max_len, return_tensors="np"))


def _describe(folder: str):
    """(tokenizer, output dim, max tokens) from the model folder, without loading the weights, so
    opening the embedder on an index check or an unchanged re-ingest costs no export and no model."""
    root = Path(folder)
    modules = json.loads((root / "modules.json").read_text(encoding="utf-8"))
    dim = None
    for mod in modules:
        cfg = root / mod.get("path", "") / "config.json"
        kind = mod.get("type", "")
        if kind.endswith("Pooling") and cfg.exists():
            pool = json.loads(cfg.read_text(encoding="utf-8"))
            # Pooling output = the word-embedding dim times the number of pooling modes switched on.
            modes = [k for k, v in pool.items() if k.startswith("pooling_mode_") and v is True]
            dim = pool["word_embedding_dimension"] * max(1, len(modes))
        elif kind.endswith("Dense") and cfg.exists():
            dim = json.loads(cfg.read_text(encoding="utf-8"))["out_features"]
    if dim is None:
        raise ModelNotFoundError(f"cannot tell the embedding size of {folder} (no Pooling module in modules.json)")
    st_cfg = root / "sentence_bert_config.json"
    max_len = json.loads(st_cfg.read_text(encoding="utf-8")).get("max_seq_length") if st_cfg.exists() else None
    max_len = int(max_len or 512)
    tok = _Tokenizer(root / "tokenizer.json", max_len) if (root / "tokenizer.json").exists() \
        else _HFTokenizer(folder, max_len)
    return tok, int(dim), max_len
