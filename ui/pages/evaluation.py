"""Evaluation reports written by ``python -m eval DATASET --out DIR``: the table and the plots."""

from pathlib import Path

import streamlit as st

from ui import components as ui
from ui import reports

st.title("Evaluation reports")

try:
    base = ui.base_settings()
except Exception as e:  # noqa: BLE001
    ui.show_error(e, "settings")
    st.stop()

roots = [Path(base.data_dir), Path.cwd()]
found = reports.find_eval_reports(roots)
typed = st.text_input("Report folder", placeholder="or type a folder written by python -m eval --out DIR")
if typed.strip():
    found = [Path(typed.strip()).expanduser(), *found]
if not found:
    st.info(ui.md_escape(f"No reports found under {roots[0]} or {roots[1]}. Write one with: "
                         "python -m eval data/eval/sample.jsonl --llm default --out runs/eval"))
    st.stop()

folder = st.selectbox("Report", found, format_func=str)
with ui.guarded("report"):
    summary = reports.load_summary(folder)
    run = summary.get("run") or {}
    if run:
        st.caption(ui.md_escape(f"dataset: {run.get('dataset')} ({run.get('questions')} questions) · "
                                f"store: {run.get('store')} · embedder: {run.get('embedder')}"))
    st.subheader("Comparison")
    st.dataframe(reports.comparison_rows(summary), hide_index=True)
    st.caption("Rates are 0-1 (higher is better); `*_s` columns are seconds per question (lower is better).")
    for cfg in summary.get("configs", []):
        for w in cfg.get("warnings") or []:
            st.warning(ui.md_escape(f"{cfg.get('name')}: {w}"))
    images = reports.plots(folder, summary)
    if images:
        st.subheader("Plots")
        for img in images:
            st.image(str(img), caption=img.name)
    report_md = Path(folder) / "report.md"
    if report_md.is_file():
        with st.expander("report.md"):
            st.code(report_md.read_text(encoding="utf-8"), language="markdown", wrap_lines=True)
