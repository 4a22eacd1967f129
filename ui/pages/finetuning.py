"""Adapters trained by ``python -m finetune.qlora``: metadata, losses, and a button to chat with one."""

from pathlib import Path

import streamlit as st

from rag.llms.adapter_meta import ADAPTER_META
from ui import components as ui
from ui import reports

st.title("Fine-tuned adapters")

try:
    base = ui.base_settings()
except Exception as e:  # noqa: BLE001
    ui.show_error(e, "settings")
    st.stop()

rows = []
with ui.guarded("listing adapters"):
    rows = ui.list_adapters(str(base.data_dir), base.tracking_uri)
if not rows:
    st.info(ui.md_escape(f"No adapters under {Path(base.data_dir) / 'adapters'}. Train one with: "
                         f"python -m finetune.qlora --base smollm2 --from-store {base.store_uri} "
                         f"--output {Path(base.data_dir) / 'adapters' / 'run1'}"))
    st.stop()

st.dataframe([{k: v for k, v in r.items() if k != "source"} for r in rows], hide_index=True,
             column_order=["created", "base", "best_eval_loss", "final_eval_loss", "train_loss", "load_in_4bit",
                           "registered", "aliases", "data_hash", "path"])
for row in rows:
    name = Path(row["path"]).name
    with st.expander(ui.md_escape(f"{name} · base {row.get('base') or '-'} · {row.get('created') or ''}")):
        spec = ui.adapter_spec(row)
        st.caption("LLM spec")
        st.code(spec, language=None)
        meta = reports.adapter_metadata(row["path"])
        if meta.get("metrics"):
            st.caption("metrics")
            st.json(meta["metrics"])
        if meta:
            st.caption(ADAPTER_META)
            st.json(meta, expanded=False)
        if st.button("Chat with this adapter", key=f"use_{row['path']}"):
            label = f"adapter: {name} on {row.get('base') or 'smollm2'}"
            st.session_state.setdefault("_ui_cfg", {})["llm_choice"] = label
            st.session_state["llm_choice"] = label  # the sidebar widget, set before it exists
            st.switch_page("chat.py")
