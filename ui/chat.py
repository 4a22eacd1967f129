"""The chat page: streamed answers with numbered, checked citations; follow-ups use the history.

The sidebar picks the store, retrieval and LLM, the collections to search, shows what the index
holds and ingests uploads. Signed in with a reader's or writer's key, only that key's collections
exist here (ui/access.py).
"""

import streamlit as st

from ui import access
from ui import components as ui

st.title("ragtune")

try:
    base = ui.base_settings()
except Exception as e:  # noqa: BLE001 - e.g. an invalid RAGTUNE_* value
    ui.show_error(e, "settings")
    st.stop()

who = access.current()
settings, opts = ui.sidebar(base, locked=access.restricted(who))  # readers cannot repoint store or model
rag = ui.get_rag(settings)
opts["collections"] = who.granted()  # if the picker fails, the search still stays inside the grant
with ui.guarded("collections"):
    opts["collections"] = access.collection_picker(rag, who)
status = st.sidebar.container()  # filled last, so it shows the model the question just loaded
target = access.write_collection(who)
if target is not None:
    ui.upload_section(rag, collection=target or None)
if st.sidebar.button("New chat", key="new_chat"):
    st.session_state["messages"] = []

ui.ingest_report()
messages = st.session_state.setdefault("messages", [])
question = st.chat_input("Ask about your documents")  # pinned to the bottom wherever it is called
if not messages and not question:
    st.caption("Ask a question about the documents in the index. Answers cite passages as [1], [2], ...")
for m in messages:
    with st.chat_message(m["role"]):
        if m.get("error"):
            st.error(ui.md_escape(m["error"]))
        elif m.get("answer"):
            ui.render_answer(m["answer"])
        else:
            st.markdown(ui.md_escape(m["content"]))

if question:
    history = ui.history_for(messages)
    with st.chat_message("user"):
        st.markdown(ui.md_escape(question))
    messages.append({"role": "user", "content": question})
    with st.chat_message("assistant"):
        answer = ui.stream_answer(rag, question, history, opts)
    if "error" in answer:
        messages.append({"role": "assistant", "content": "", "error": answer["error"]})
    else:
        messages.append({"role": "assistant", "content": answer["answer"], "answer": answer})

with status:
    ui.index_status(rag, collections=opts.get("collections") if access.restricted(who) else None)
