"""ragtune UI: ``streamlit run ui/app.py`` (binds 127.0.0.1, see .streamlit/config.toml).

Pages: Chat (``ui/chat.py``), Evaluation reports and Fine-tuned adapters (``ui/pages/``).
All work is done by calls into ``rag.RAG``; the helpers are in ``ui/components.py``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, installed or not

import streamlit as st

st.set_page_config(page_title="ragtune", page_icon=":material/forum:", layout="wide")
st.navigation([
    st.Page("chat.py", title="Chat", icon=":material/forum:", default=True),
    st.Page("pages/evaluation.py", title="Evaluation", icon=":material/leaderboard:"),
    st.Page("pages/finetuning.py", title="Fine-tuning", icon=":material/tune:"),
]).run()
