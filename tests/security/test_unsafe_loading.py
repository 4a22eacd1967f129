"""Models and data are never unpickled, and repos never run their own code unless asked.

A scan of the source tree (every .py file of the packages, bench/, scripts/ and ui/): no
``torch.load`` without ``weights_only=True``, no ``pickle`` / ``dill`` / ``joblib`` loading, no
``numpy.load(allow_pickle=True)``, no ``yaml.load`` without a safe loader, no
``trust_remote_code=True`` literal (it must come from settings, off by default), and local LLM
weights only from safetensors.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ["rag", "ingest", "finetune", "eval", "ui", "bench", "scripts"]


def _sources() -> list[Path]:
    files = [p for d in SCANNED if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py")]
    assert len(files) > 50
    return files


def _calls(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _unsafe(paths: list[Path]) -> list[str]:
    problems = []
    for path in paths:
        rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for call, func in _calls(path):
            where = f"{rel}:{call.lineno}: {func}(...)"
            if func == "torch.load":
                value = _kw(call, "weights_only")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(where + " without weights_only=True")
            if re.fullmatch(r"(c?pickle|dill|joblib|cloudpickle|marshal|shelve)\.(load|loads|Unpickler|open)", func):
                problems.append(where)
            if func in ("np.load", "numpy.load"):
                value = _kw(call, "allow_pickle")
                if isinstance(value, ast.Constant) and value.value is True:
                    problems.append(where + " with allow_pickle=True")
            if func == "yaml.load":
                loader = _kw(call, "Loader")
                if loader is None or "Safe" not in ast.unparse(loader):
                    problems.append(where + " without a SafeLoader")
            if func in ("eval", "exec"):
                problems.append(where)
    return problems


def test_no_unsafe_deserialisation_in_the_source_tree():
    problems = _unsafe(_sources())
    assert not problems, "\n".join(problems)


def test_the_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch, pickle, yaml, numpy as np\n"
                   "torch.load('m.pt')\ntorch.load('m.pt', weights_only=False)\ntorch.load('m.pt', weights_only=True)\n"
                   "pickle.loads(b'')\nnp.load('x.npy', allow_pickle=True)\nyaml.load(s)\n"
                   "yaml.load(s, Loader=yaml.SafeLoader)\neval('1')\n")
    assert len(_unsafe([bad])) == 6


def test_trust_remote_code_only_from_settings_and_off_by_default():
    from finetune.config import QLoRAConfig
    from rag.settings import Settings

    literal_true = []
    for path in _sources():
        for call, func in _calls(path):
            value = _kw(call, "trust_remote_code")
            if isinstance(value, ast.Constant) and value.value is True:
                literal_true.append(f"{path.relative_to(ROOT)}:{call.lineno}: {func}")
    assert not literal_true, literal_true
    assert Settings().llm.trust_remote_code is False
    assert QLoRAConfig().trust_remote_code is False


def test_local_llm_weights_load_from_safetensors_only():
    src = (ROOT / "rag" / "llms" / "hf.py").read_text()
    calls = [c for c, f in _calls(ROOT / "rag" / "llms" / "hf.py") if f == "AutoModelForCausalLM.from_pretrained"]
    assert calls and all(_kw(c, "use_safetensors") is not None for c in calls)
    assert "use_safetensors=None if gguf_file else True" in src  # GGUF files are parsed, not unpickled
