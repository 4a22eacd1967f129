"""ragtune UI: ``streamlit run ui/app.py`` (binds 127.0.0.1, see .streamlit/config.toml).

Pages: Chat (``ui/chat.py``), Evaluation reports and Fine-tuned adapters (``ui/pages/``).
With API keys in the data directory, every page first asks for one (``ui/access.py``).
All work is done by calls into ``rag.RAG``; the helpers are in ``ui/components.py``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere, installed or not

import streamlit as st

from ui import access
from ui.components import base_settings, show_error

st.set_page_config(page_title="ragtune", page_icon=":material/forum:", layout="wide")
try:
    who = access.sign_in(base_settings())  # with API keys in the data dir: a key first, nothing else
except Exception as e:  # noqa: BLE001 - e.g. an invalid RAGTUNE_* value: say so, show nothing more
    show_error(e, "settings")
    st.stop()
pages = [st.Page("chat.py", title="Chat", icon=":material/forum:", default=True)]
if not access.restricted(who):  # reports and adapters cover every collection: admins only
    pages += [st.Page("pages/evaluation.py", title="Evaluation", icon=":material/leaderboard:"),
              st.Page("pages/finetuning.py", title="Fine-tuning", icon=":material/tune:")]
st.navigation(pages).run()
