"""Reports: the console table, the ``--json`` object, and the files ``--out`` writes.

``--out DIR`` gets ``rows.jsonl`` (one line per question per configuration), ``summary.json``
(the ``--json`` object plus run details), ``report.md`` (the table with 95% intervals and the
worst questions per configuration) and PNG plots comparing the configurations.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval.harness import ConfigResult

__all__ = ["LOWER_IS_BETTER", "TABLE_ORDER", "columns", "format_table", "summary", "write_outputs"]

TABLE_ORDER = ["em", "f1", "rougeL", "semantic", "hit@1", "hit@3", "hit@5", "hit@10", "mrr", "recall@k",
               "answer_recall", "groundedness_lexical", "cited", "cited_gold", "unsupported", "attributed",
               "judge_correct", "judge_grounded", "judge_kappa_f1",
               "judge_unparsed", "retrieval_s", "generation_s", "latency_s", "tokens_generated"]
LOWER_IS_BETTER = {"retrieval_s", "generation_s", "latency_s", "tokens_generated", "judge_unparsed", "unsupported"}
_RATES = [m for m in TABLE_ORDER if m not in LOWER_IS_BETTER]
_SHORT = {"groundedness_lexical": "grounded", "judge_correct": "j_correct", "judge_grounded": "j_grounded",
          "judge_kappa_f1": "j_kappa", "judge_unparsed": "j_unparsed", "answer_recall": "ans_rec",
          "tokens_generated": "tokens", "retrieval_s": "ret_ms", "generation_s": "gen_s", "latency_s": "lat_s"}


def columns(results: Sequence[ConfigResult]) -> list[str]:
    """Metrics present in any result, in table order (unknown extras last)."""
    present: list[str] = []
    for r in results:
        present += [k for k, v in r.metrics.items() if v is not None and k not in present]
    return [m for m in TABLE_ORDER if m in present] + [m for m in present if m not in TABLE_ORDER]


def summary(results: Sequence[ConfigResult], **extra: Any) -> dict[str, Any]:
    """The ``--json`` object: ``{"configs": [{"name", "llm", "retrieval", "n", "metrics", "ci"}, ...]}``."""
    out: dict[str, Any] = {"configs": [r.to_dict() for r in results]}
    out.update(extra)
    return _clean(out)


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) else round(obj, 6)
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def _fmt(metric: str, value: float | None) -> str:
    if value is None:
        return "-"
    if metric == "retrieval_s":
        return f"{value * 1000:.1f}"
    if metric in ("generation_s", "latency_s"):
        return f"{value:.2f}"
    if metric == "tokens_generated":
        return f"{value:.1f}"
    return f"{value:.3f}"


def format_table(results: Sequence[ConfigResult], metrics: Sequence[str] | None = None) -> str:
    """One row per configuration, metrics side by side (retrieval latency in ms, others in s)."""
    metrics = list(metrics or columns(results))
    header = ["config", "n"] + [_SHORT.get(m, m) for m in metrics]
    body = [[r.config.name, str(r.n)] + [_fmt(m, r.metrics.get(m)) for m in metrics] for r in results]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(b) for b in body)])


def _markdown(results: Sequence[ConfigResult], meta: dict[str, Any]) -> str:
    metrics = columns(results)
    lines = ["# Evaluation report", ""]
    lines += [f"- dataset: `{meta.get('dataset')}` ({meta.get('questions')} questions)",
              f"- store: `{meta.get('store')}`", f"- embedder: `{meta.get('embedder')}`",
              (f"- intervals: 95% percentile bootstrap over questions ({meta.get('bootstrap')} resamples, "
               f"seed {meta.get('seed')})"), ""]
    lines += ["| config | llm | retrieval | k | n | " + " | ".join(metrics) + " |",
              "|" + "---|" * (5 + len(metrics))]
    for r in results:
        cells = []
        for m in metrics:
            v, ci = r.metrics.get(m), r.ci.get(m)
            cell = _fmt(m, v)
            if ci and v is not None and m not in LOWER_IS_BETTER:
                cell += f" ({_fmt(m, ci[0])}-{_fmt(m, ci[1])})"
            cells.append(cell)
        llm = "none" if r.config.llm is None else (r.config.llm or "default")
        lines.append(f"| {r.config.name} | `{llm}` | {r.config.retrieval} | {r.config.k} | {r.n} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Retrieval latency (`ret_ms`) is in milliseconds; generation and total latency in seconds.", ""]
    for r in results:
        key = "f1" if r.config.full else "mrr"
        if r.warnings:
            lines += [f"Warnings for {r.config.name}: {'; '.join(r.warnings)}", ""]
        scored = [row for row in r.rows if row["metrics"].get(key) is not None and row["metrics"][key] < 1.0]
        worst = sorted(scored, key=lambda row: row["metrics"][key])[:5]
        if not worst:
            continue
        lines += [f"## {r.config.name}: lowest {key}", "", f"| id | question | {key} | top retrieved |", "|---|---|---|---|"]
        for row in worst:
            top = row["retrieved"][0] if row["retrieved"] else None
            where = f"{top['source']} p.{top['page']}" if top else "-"
            q = row["question"].replace("|", "\\|")
            lines.append(f"| {row['id']} | {q} | {row['metrics'][key]:.3f} | {where} |")
        lines.append("")
    for name in ("plot_metrics.png", "plot_hit_at_k.png", "plot_latency.png"):
        if (meta.get("plots") or []) and name in meta["plots"]:
            lines += [f"![{name}]({name})", ""]
    return "\n".join(lines)


def _plots(out: Path, results: Sequence[ConfigResult]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    written = []
    names = [r.config.name for r in results]
    rates = [m for m in _RATES if any(r.metrics.get(m) is not None for r in results)]
    if rates:
        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rates) * max(1, len(results)) ** 0.5 + 2), 4.2))
        width = 0.8 / max(1, len(results))
        x = np.arange(len(rates))
        for i, r in enumerate(results):
            vals = [r.metrics.get(m) or 0.0 for m in rates]
            errs = np.array([[max(0.0, (r.metrics.get(m) or 0) - (r.ci.get(m) or [0, 0])[0]),
                              max(0.0, (r.ci.get(m) or [0, 0])[1] - (r.metrics.get(m) or 0))]
                             if r.ci.get(m) else [0, 0] for m in rates]).T
            ax.bar(x + i * width - 0.4 + width / 2, vals, width, yerr=errs, capsize=2, label=r.config.name)
        ax.set_xticks(x, rates, rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("score (95% CI)")
        ax.set_title("Metrics by configuration")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "plot_metrics.png", dpi=100)
        plt.close(fig)
        written.append("plot_metrics.png")
    depths = sorted({int(m.split("@")[1]) for r in results for m in r.metrics
                     if m.startswith("hit@") and r.metrics[m] is not None})
    if depths:
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in results:
            ax.plot(depths, [r.metrics.get(f"hit@{d}") or 0.0 for d in depths], marker="o", label=r.config.name)
        ax.set_xlabel("k")
        ax.set_ylabel("hit@k")
        ax.set_ylim(0, 1.05)
        ax.set_xticks(depths)
        ax.set_title("Hit rate by depth")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "plot_hit_at_k.png", dpi=100)
        plt.close(fig)
        written.append("plot_hit_at_k.png")
    lat = [m for m in ("retrieval_s", "generation_s") if any(r.metrics.get(m) is not None for r in results)]
    if lat:
        fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(names) + 2), 4))
        bottom = np.zeros(len(results))
        for m in lat:
            vals = np.array([r.metrics.get(m) or 0.0 for r in results])
            ax.bar(names, vals, bottom=bottom, label=m)
            bottom += vals
        ax.set_ylabel("seconds per question (mean)")
        ax.set_title("Latency by configuration")
        ax.tick_params(axis="x", labelrotation=30)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "plot_latency.png", dpi=100)
        plt.close(fig)
        written.append("plot_latency.png")
    return written


def write_outputs(out: str | Path, results: Sequence[ConfigResult], meta: dict[str, Any]) -> list[Path]:
    """Write rows.jsonl, summary.json, report.md and the plots into ``out``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "rows.jsonl").open("w", encoding="utf-8") as fh:
        for r in results:
            for row in r.rows:
                fh.write(json.dumps(_clean(row), ensure_ascii=False) + "\n")
    plots = _plots(out, results)
    meta = {**meta, "plots": plots}
    (out / "summary.json").write_text(json.dumps(summary(results, run=meta), indent=2, ensure_ascii=False,
                                                 default=str) + "\n", encoding="utf-8")
    (out / "report.md").write_text(_markdown(results, meta), encoding="utf-8")
    return [out / "rows.jsonl", out / "summary.json", out / "report.md", *(out / p for p in plots)]
