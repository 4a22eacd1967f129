"""python -m rag ask: answer a question from the index, with numbered sources.

Examples:
    python -m rag ask "What does the warranty cover?"
    python -m rag ask "..." --llm gguf:./models/qwen2.5-0.5b-instruct-q4_k_m.gguf --k 8 --mode hybrid
    python -m rag ask "..." --llm openai:gpt-4o-mini --json
    python -m rag ask "..." --collection hr --collection handbook
"""

from __future__ import annotations

import argparse
import sys

from rag.cli import add_common, print_json, settings_from
from rag.types import MODES

HELP = "answer a question from the index, citing numbered sources"


def add_llm_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags shared by ask and chat."""
    g = parser.add_argument_group("answer options")
    g.add_argument("--llm", metavar="SPEC", help="LLM spec: '' (the best installed model), a catalogue name (python -m rag models list), hf:ID[+adapter:DIR], "
                                                 "gguf:PATH, openai:MODEL (see docs/llms.md)")
    g.add_argument("--k", type=int, metavar="N", help="passages handed to the LLM (default: settings, 5)")
    g.add_argument("--mode", choices=MODES, help="retrieval method")
    g.add_argument("--source", metavar="FILE", help="only passages from this source")
    g.add_argument("--collection", action="append", metavar="NAME",
                   help="only passages from this collection (repeatable; default: every collection)")
    g.add_argument("--max-new-tokens", type=int, metavar="N", help="token limit for the answer")
    g.add_argument("--temperature", type=float, metavar="T", help="0 = greedy (default)")
    g.add_argument("--threads", type=int, metavar="N", help="CPU threads for a local LLM (default: per request, the cores other processes leave free)")


def llm_flags(args: argparse.Namespace) -> dict:
    return {"llm.spec": args.llm, "retrieval.k": args.k, "retrieval.mode": args.mode,
            "llm.max_new_tokens": args.max_new_tokens, "llm.temperature": args.temperature,
            "llm.threads": args.threads}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", help="the question to answer")
    add_llm_arguments(parser)
    add_common(parser)
    parser.add_argument("--no-stream", action="store_true", help="print the answer only once it is complete")


def format_sources(answer) -> str:
    """Numbered sources: ``[1] file.pdf p.3 (score 0.812) cited``; ``[hr]`` after the page marks a
    collection other than default."""
    lines = []
    for s in answer.sources:
        page = f" p.{s.page}" if s.page else ""
        if getattr(s, "collection", "default") != "default":
            page += f" [{s.collection}]"
        mark = " cited" if s.cited else (" (implicit: the model cited nothing; closest passage by shared words)" if s.implicit else "")
        snippet = " ".join(s.text.split())[:100]
        lines.append(f"[{s.n}] {s.source}{page} (score {s.score:.3f}){mark}\n    {snippet}")
    return "\n".join(lines)


def json_answer(answer) -> dict:
    """``{"answer", "sources": [{"source", "page", "score", "text", "cited"}], ...}``."""
    d = answer.to_dict()
    d["sources"] = [{"source": s["source"], "page": s["page"], "score": s["score"], "text": s["text"],
                     "cited": s["cited"]} for s in d["sources"]]
    return d


def print_answer_stream(streaming, out=None) -> object:
    """Write tokens as they come, then a newline; return the finished Answer."""
    out = out or sys.stdout
    for piece in streaming:
        out.write(piece)
        out.flush()
    out.write("\n")
    return streaming.answer


def print_notes(answer, out=None) -> None:
    out = out or sys.stderr
    sys.stdout.flush()  # the notes follow the sources on a terminal, not in the middle of them
    notes = {"no_citations": "note: the model cited no passage; [1] is shown as the likely source",
             "invalid_citations": f"note: cited passages that do not exist: {answer.invalid_citations}",
             "unsupported_sentences": "note: some cited sentences share no words with their passages",
             "context_truncated": f"note: {answer.dropped} passage(s) did not fit the context window"}
    for flag in answer.flags:
        if flag in notes:
            print(notes[flag], file=out)


def run(args: argparse.Namespace) -> int:
    from rag.api import RAG
    from rag.stores import require_index

    settings = settings_from(args, **llm_flags(args))
    flt = {"source": args.source} if args.source else None
    require_index(settings.store_uri)  # a read-only command creates nothing
    with RAG(settings=settings) as rag:
        if args.json or args.no_stream:
            answer = rag.ask(args.question, filter=flt, collections=args.collection)
            if args.json:
                print_json(json_answer(answer))
                return 0
            print(answer.text)
        else:
            answer = print_answer_stream(rag.stream(args.question, filter=flt, collections=args.collection))
        print("\nSources:")
        print(format_sources(answer) or "(none)")
        print_notes(answer)
    return 0
