"""The LangChain and LlamaIndex retrievers (rag/interop.py) over a real embedded store and real MiniLM.

data/sample is ingested once for the module, with the session's embedder. No LLM of either
framework runs here: the project depends only on langchain-core and llama-index-core, which ship
no model that runs offline, so the LLM steps use their own test doubles (FakeListChatModel,
MockLLM) and the assertions are on what reached them: the passages ragtune retrieved.
"""

from __future__ import annotations

import asyncio
import sys
import threading

import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests

from rag.errors import ConfigError, MissingDependencyError
from tests.conftest import SAMPLE

QUESTION = "On what date did Lincoln deliver the Gettysburg Address?"


@pytest.fixture(scope="module")
def sample_rag(tmp_path_factory, embedder):
    """data/sample in a private embedded store (module-wide: ingest is the slow part)."""
    from rag.api import RAG
    from rag.embedders.cache import CachedEmbedder
    from rag.settings import load_settings

    data_dir = tmp_path_factory.mktemp("interop-store")
    rag = RAG(settings=load_settings(env={}, overrides={"data_dir": str(data_dir)}))
    rag._embedder = CachedEmbedder(embedder, rag.settings.data_dir / "cache")   # MiniLM loads once a session
    res = rag.ingest([SAMPLE])
    assert not res.failed and res.chunks > 10
    yield rag
    rag.close()


class TestLangChainStandardSuite(RetrieversIntegrationTests):
    """langchain-tests' standard retriever suite, unmodified (k in the constructor and in invoke, async)."""

    @pytest.fixture(autouse=True)
    def _bind_rag(self, sample_rag):
        # The suite builds retrievers from a property, which cannot take fixtures: hand it the RAG here.
        self.rag = sample_rag

    @property
    def retriever_constructor(self):
        from rag.interop import LangChainRetriever

        return LangChainRetriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"rag": self.rag, "mode": "hybrid"}

    @property
    def retriever_query_example(self) -> str:
        return QUESTION


def test_langchain_documents_carry_source_page_score_and_chunk_id(sample_rag):
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    retriever = sample_rag.as_langchain_retriever(k=3, mode="hybrid")
    assert isinstance(retriever, BaseRetriever)
    docs = retriever.invoke(QUESTION)
    hits = sample_rag.retrieve(QUESTION, k=3, mode="hybrid")
    assert [d.page_content for d in docs] == [h.text for h in hits]
    for doc, hit in zip(docs, hits):
        assert isinstance(doc, Document) and doc.id == hit.id
        assert doc.metadata == {**hit.metadata, "source": hit.source, "page": hit.page, "score": hit.score,
                                "chunk_id": hit.id, "chunk_index": hit.chunk_index}
    assert (docs[0].metadata["source"], docs[0].metadata["page"]) == ("gettysburg.pdf", 2)
    assert "November 19, 1863" in docs[0].page_content


def test_lcel_chain_puts_the_retrieved_passages_in_the_prompt(sample_rag):
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.language_models import FakeListChatModel
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnablePassthrough

    class PromptRecorder(BaseCallbackHandler):
        """Keeps the messages each chat model was called with: what the LLM would have read."""

        def __init__(self) -> None:
            self.messages: list[str] = []

        def on_chat_model_start(self, serialized, messages, **kwargs):
            self.messages += [m.content for batch in messages for m in batch]

    def format_docs(docs) -> str:
        return "\n\n".join(f"[{d.metadata['source']} p.{d.metadata['page']}] {d.page_content}" for d in docs)

    prompt = ChatPromptTemplate.from_messages([("system", "Answer from this context only:\n\n{context}"),
                                               ("human", "{question}")])
    # A fake chat model: no LangChain-wrapped LLM runs offline here, and the prompt is what is under test.
    model = FakeListChatModel(responses=["November 19, 1863 [1]"])
    retriever = sample_rag.as_langchain_retriever(k=2, mode="hybrid")
    chain = ({"context": retriever | format_docs, "question": RunnablePassthrough()}
             | prompt | model | StrOutputParser())

    recorder = PromptRecorder()
    assert chain.invoke(QUESTION, config={"callbacks": [recorder]}) == "November 19, 1863 [1]"
    system, human = recorder.messages
    assert human == QUESTION
    hits = sample_rag.retrieve(QUESTION, k=2, mode="hybrid")
    assert len(hits) == 2
    for hit in hits:
        assert f"[{hit.source} p.{hit.page}] {hit.text}" in system
    assert "November 19, 1863" in system


def test_llamaindex_query_engine_answers_with_sources(sample_rag):
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.retrievers import BaseRetriever

    retriever = sample_rag.as_llamaindex_retriever(k=3, mode="hybrid")
    assert isinstance(retriever, BaseRetriever)
    # MockLLM: llama-index-core has no LLM that runs offline; it echoes its prompt, which we inspect.
    engine = RetrieverQueryEngine.from_args(retriever, llm=MockLLM())
    response = engine.query(QUESTION)

    hits = sample_rag.retrieve(QUESTION, k=3, mode="hybrid")
    got = [(n.node.node_id, n.node.metadata["chunk_id"], n.node.metadata["source"], n.node.metadata["page"],
            n.node.metadata["chunk_index"], n.score) for n in response.source_nodes]
    assert got == [(h.id, h.id, h.source, h.page, h.chunk_index, pytest.approx(h.score)) for h in hits]
    assert [n.node.get_content() for n in response.source_nodes] == [h.text for h in hits]
    top = response.source_nodes[0]
    assert (top.node.metadata["source"], top.node.metadata["page"]) == ("gettysburg.pdf", 2)
    assert top.score > response.source_nodes[-1].score
    # The echoed prompt holds the passages with their source and page, and no chunk ids.
    answer = str(response)
    assert "November 19, 1863" in answer and "source: gettysburg.pdf" in answer and "page: 2" in answer
    assert top.node.node_id not in answer


async def test_async_retrieval_runs_off_the_event_loop(sample_rag, monkeypatch):
    """Both async paths hand the blocking embed + search to a thread, so the loop keeps serving."""
    loop_thread = threading.get_ident()
    threads: list[int] = []
    real = sample_rag.retrieve

    def spy(*args, **kwargs):   # records the calling thread, then runs the real retrieval
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(sample_rag, "retrieve", spy)
    docs, nodes = await asyncio.gather(sample_rag.as_langchain_retriever(k=2).ainvoke(QUESTION),
                                       sample_rag.as_llamaindex_retriever(k=2).aretrieve(QUESTION))
    assert [d.id for d in docs] == [n.node.node_id for n in nodes] and len(docs) == 2
    assert len(threads) == 2 and loop_thread not in threads


def test_filter_and_per_call_overrides(sample_rag):
    lc = sample_rag.as_langchain_retriever(k=4, filter={"source": "declaration.pdf"})
    docs = lc.invoke(QUESTION)
    assert docs and all(d.metadata["source"] == "declaration.pdf" for d in docs)
    # invoke(k=..., mode=..., filter=...) wins over the constructor for that call only
    page_2 = {"source": "gettysburg.pdf", "page_min": 2, "page_max": 2}
    one = lc.invoke(QUESTION, k=1, mode="bm25", filter=page_2)
    assert [(d.metadata["source"], d.metadata["page"]) for d in one] == [("gettysburg.pdf", 2)]
    assert len(lc.invoke(QUESTION)) == len(docs)

    li = sample_rag.as_llamaindex_retriever(k=4, mode="dense", filter={"source": ["acme_widget_faq.md"]})
    nodes = li.retrieve("What colour is the widget?")
    assert nodes and {n.node.metadata["source"] for n in nodes} == {"acme_widget_faq.md"}


@pytest.mark.parametrize("bad", [{"k": 0}, {"k": -1}, {"k": True}, {"k": "3"}, {"mode": "semantic"}])
def test_bad_k_or_mode_is_refused_when_the_retriever_is_built(sample_rag, bad):
    from rag.interop import LangChainRetriever, LlamaIndexRetriever

    for build in (sample_rag.as_langchain_retriever, sample_rag.as_llamaindex_retriever,
                  lambda **kw: LangChainRetriever(rag=sample_rag, **kw),
                  lambda **kw: LlamaIndexRetriever(sample_rag, **kw)):
        with pytest.raises(ConfigError, match=rf"^{next(iter(bad))}: "):
            build(**bad)


def test_bad_k_at_call_time_is_the_rag_s_config_error(sample_rag):
    with pytest.raises(ConfigError, match="k: 0 is not a number of passages"):
        sample_rag.as_langchain_retriever().invoke(QUESTION, k=0)


@pytest.mark.parametrize("factory, module, extra", [
    ("_langchain_class", "langchain_core.retrievers", "langchain"),
    ("_llamaindex_class", "llama_index.core.retrievers", "llamaindex"),
])
def test_a_missing_framework_names_its_extra(monkeypatch, factory, module, extra):
    from rag import interop

    monkeypatch.setitem(sys.modules, module, None)   # how an uninstalled package looks to `import`
    with pytest.raises(MissingDependencyError, match=rf"pip install 'ragtune\[{extra}\]'"):
        getattr(interop, factory).__wrapped__()      # bypass the cache: the class may be built already
