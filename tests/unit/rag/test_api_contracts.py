"""Python API and CLI contracts a new user meets first (issue 16, part 4).

Each test here failed before its fix: names in ``__all__`` that did not import, ``k=0`` that
returned 5 hits, ``rag ask`` without an index that created one, a hub-id message for a missing
folder, argparse's usage block printed before the error line.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

from rag.errors import ConfigError, DataError, ModelNotFoundError
from tests.conftest import ROOT

PACKAGES = ["rag", "ingest", "finetune", "eval", "loop"]


def _packages():
    for top in PACKAGES:
        if not (ROOT / top / "__init__.py").exists():
            continue
        yield top
        mod = importlib.import_module(top)
        for info in pkgutil.walk_packages(mod.__path__, top + "."):
            if info.ispkg:
                yield info.name


@pytest.mark.parametrize("name", list(_packages()))
def test_every_name_in_a_package_all_imports(name):
    mod = importlib.import_module(name)
    namespace: dict = {}
    exec(f"from {name} import *", namespace)  # what `from rag import *` does (submodules included)
    missing = sorted(set(getattr(mod, "__all__", [])) - set(namespace))
    assert missing == [], f"{name}.__all__ lists names it does not define: {missing}"


def test_rag_exports_its_errors_and_types():
    from rag import RAG, Answer, ConfigError, RagtuneError, Source, StoreError  # noqa: F401

    assert issubclass(StoreError, RagtuneError) and issubclass(ConfigError, RagtuneError)


@pytest.fixture
def rag(tmp_path):
    from rag.api import RAG

    r = RAG()
    yield r
    r.close()


@pytest.mark.parametrize("kw, field", [({"k": 0}, "k"), ({"k": -1}, "k"), ({"k": True}, "k"), ({"k": "3"}, "k"),
                                       ({"k": 10_000}, "k"), ({"mode": "semantic"}, "mode"),
                                       ({"fetch_k": 0}, "fetch_k")])
def test_retrieve_validates_k_mode_and_fetch_k_before_loading_anything(rag, kw, field):
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        rag.retrieve("what is the refund policy?", **kw)
    assert rag.loaded() == {"store": None, "embedder": None, "llm": None}


@pytest.mark.parametrize("question", ["", "   ", "\n\t"])
def test_blank_question_is_refused_on_every_route(rag, question):
    for call in (rag.retrieve, rag.ask, rag.stream):
        with pytest.raises(ConfigError, match="question: empty"):
            call(question)
    assert rag.loaded() == {"store": None, "embedder": None, "llm": None}


@pytest.mark.parametrize("texts, metadatas, match", [
    ([""], None, r"texts\[0\]: empty"),
    (["ok", "  "], None, r"texts\[1\]: empty"),
    (["y"], [{"page": "abc"}], r"metadatas\[0\]\.page: 'abc' is not a page number"),
    (["y"], [{"page": -2}], r"metadatas\[0\]\.page"),
    (["y"], ["not a dict"], r"metadatas\[0\]: expected an object"),
    (["a", "b"], [{}], "2 texts but 1 metadatas"),
    ("just one string", None, "wrap it in a list"),
])
def test_add_texts_rejects_bad_input_naming_the_field_and_stores_nothing(rag, texts, metadatas, match):
    with pytest.raises(DataError, match=match):
        rag.add_texts(texts, metadatas=metadatas)
    assert rag.loaded()["embedder"] is None  # refused before the embedder was even loaded


def test_add_texts_accepts_a_page_given_as_digits():
    from rag.api import _check_texts

    _, metas = _check_texts(["y"], [{"page": "7", "source": "a"}], None)
    assert metas == [{"page": 7, "source": "a"}]


def test_ask_without_an_index_exits_1_and_creates_nothing(tmp_path, capsys):
    from rag.__main__ import main

    data = tmp_path / "nothing-here"
    assert main(["ask", "what?", "--data-dir", str(data)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: no index at {data / 'index'}: run python -m ingest")
    assert not data.exists()
    assert main(["stats", "--data-dir", str(data)]) == 1 and not data.exists()


def test_missing_local_model_folder_is_named_as_such(tmp_path):
    from rag.llms import open_llm
    from rag.settings import Settings

    pytest.importorskip("transformers")
    with pytest.raises(ModelNotFoundError, match="^no such model folder: /nonexistent$"):
        open_llm("hf:/nonexistent", Settings(data_dir=tmp_path))
    with pytest.raises(ModelNotFoundError, match="^no such embedder folder: ./nope$"):
        from rag.model_paths import resolve_embedder

        resolve_embedder("./nope")


@pytest.mark.parametrize("argv", [["ask", "q", "--k", "x"], ["nonsense"], ["ask"]])
def test_usage_error_prints_its_error_line_first(argv, capsys):
    from rag.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: ") and sum(line.startswith("error:") for line in err) == 1
    assert any(line.startswith("usage:") for line in err[1:])


def test_ingest_usage_error_line_first(capsys):
    from ingest.__main__ import main

    assert main([]) == 2
    assert capsys.readouterr().err.startswith("error: give at least one PATH")


def test_embedder_spec_and_the_index_agree_on_one_id():
    """``st:all-MiniLM-L6-v2`` used to fail the second ingest with IndexMismatchError: the
    pipeline recorded the raw setting while the opened embedder reported the resolved id."""
    from rag.embedders import embedder_id

    ids = {embedder_id(s) for s in ("all-MiniLM-L6-v2", "st:all-MiniLM-L6-v2",
                                    "sentence-transformers/all-MiniLM-L6-v2")}
    assert ids == {"sentence-transformers/all-MiniLM-L6-v2"}
    assert embedder_id("st:/models/mine") == "/models/mine"
    with pytest.raises(ConfigError, match="unknown embedder prefix 'zz'"):
        embedder_id("zz:model")


def test_readme_hit_signature_matches_the_dataclass():
    from dataclasses import fields

    from rag.types import Hit

    order = ", ".join(f.name for f in fields(Hit))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"Hit({order})" in readme, f"README should show Hit({order})"


def test_rag_core_never_imports_a_stage_at_module_level():
    """Arrows run one way: stages import rag, rag imports no stage (RAG.ingest imports the
    pipeline inside the method, as the facade over python -m ingest)."""
    import ast

    offenders = []
    for path in (ROOT / "rag").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module level only
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if any(n.split(".")[0] in ("ingest", "finetune", "eval", "loop", "ui") for n in names):
                    offenders.append(f"{path.relative_to(ROOT)}: {names}")
    assert offenders == []


def test_modules_stay_small():
    big = {str(p.relative_to(ROOT)): n for p in ROOT.glob("*/**/*.py")
           if p.parts[len(ROOT.parts)] in PACKAGES + ["ui"]
           and (n := len(p.read_text(encoding="utf-8").splitlines())) > 450}
    assert big == {}, f"split these modules (one concept each, ~400 lines): {big}"


def test_embedded_store_path_helper_is_public():
    from rag.stores import local_path

    assert local_path("file://~/x") == Path("~/x").expanduser()
