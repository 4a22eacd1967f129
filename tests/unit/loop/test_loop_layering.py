"""Where things live: the loop above finetune and eval, settings loaded only by command lines, one
adapter-metadata name, small modules, and the earlier ``python -m finetune.loop`` still working."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
CLI_FUNCTIONS = {"main", "_main"}


def _sources(*folders: str) -> list[Path]:
    return sorted(p for d in folders for p in (ROOT / d).rglob("*.py"))


def _outer_functions(tree: ast.Module):
    """(name of the top-level function or class a node sits in, or '' at module level, node)."""
    for top in tree.body:
        name = top.name if isinstance(top, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else ""
        for node in ast.walk(top):
            yield name, node


def test_only_command_line_entry_points_load_settings():
    """Library code gets settings (or the data dir) passed in; reading the environment and the current
    folder is for ``main()`` (and ``build_*`` parser helpers) alone."""
    offenders = []
    for path in _sources("finetune", "loop"):
        for outer, node in _outer_functions(ast.parse(path.read_text(encoding="utf-8"))):
            named = (isinstance(node, ast.Name) and node.id == "load_settings") or \
                    (isinstance(node, ast.Attribute) and node.attr == "load_settings")
            if named and not (outer in CLI_FUNCTIONS or outer.startswith("build_")):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} in {outer or 'module level'}")
    assert not offenders, "load_settings outside a command-line entry point:\n" + "\n".join(offenders)


def test_finetune_does_not_import_eval_or_loop():
    """finetune sits below the loop: the loop uses finetune and eval, never the reverse."""
    offenders = []
    for path in _sources("finetune"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                          if n.split(".")[0] in {"eval", "loop"} and path.name != "loop.py"]
    assert not offenders, offenders
    code = ("import sys, finetune, finetune.loop, finetune.qlora, finetune.synth, finetune.merge, "
            "finetune.adapters; print(sorted(m for m in sys.modules if m.split('.')[0] in ('eval', 'loop')))")
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr[-2000:]


def test_adapter_metadata_file_is_named_once():
    defined = [str(p.relative_to(ROOT)) for p in _sources("rag", "finetune", "loop", "ui")
               for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
               if isinstance(n, ast.Constant) and n.value == "ragtune_adapter.json"]
    assert defined == ["rag/llms/adapter_meta.py"], defined


def test_modules_stay_small_and_the_recipe_reads_setup_train_save():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
             for p in _sources("finetune", "loop")}
    assert all(n <= 400 for n in sizes.values()), {k: n for k, n in sizes.items() if n > 400}
    recipe = next(n for n in ast.parse((ROOT / "finetune" / "qlora.py").read_text()).body
                  if isinstance(n, ast.ClassDef) and n.name == "QLoRARecipe")
    public = [f.name for f in recipe.body if isinstance(f, ast.FunctionDef) and not f.name.startswith("_")]
    assert public == ["setup", "train", "save"]


def test_finetune_loop_is_the_same_command(capsys):
    from finetune.loop import main

    assert main(["--out", "x", "splt.val=0.1"]) == 2
    err = capsys.readouterr().err
    assert "docs: give DOCS" in err and "did you mean 'split'" in err
    for module in ("loop", "finetune.loop"):
        out = subprocess.run([sys.executable, "-m", module, "--help"], check=False, cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0 and "usage: python -m loop" in out.stdout and "--stage" in out.stdout
