"""Shortlist: a FAISS index over the label embeddings and each document's top-k labels.

Label and document vectors are L2-normalised, so inner product is cosine similarity. Small label sets use an
exact ``IndexFlatIP``; above ``hnsw_threshold`` labels an ``IndexHNSWFlat`` keeps a search per document at a
fraction of a millisecond (exact search over 500k labels costs more than encoding the document).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np
from tqdm.auto import tqdm

from st_lmtx.files import atomic_path, atomic_write_text
from st_lmtx.inputs import DocumentSet, DocumentsLike, LabelSet, LabelsLike, load_documents, load_labels

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)


@dataclass
class IndexConfig:
    """How the label index is built. ``hnsw_threshold``: label count from which HNSW replaces exact search."""

    hnsw_threshold: int = 100_000
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 512


@dataclass
class Shortlist:
    """Top-k labels per document: ``indices[i]`` are label positions, best first; ``scores[i]`` their
    cosine similarities. Positions HNSW could not fill are -1 with score -inf."""

    indices: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    def for_doc(self, i: int) -> list[int]:
        return [int(j) for j in self.indices[i] if j >= 0]

    def save(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would append ".npz"
            np.savez(f, indices=self.indices, scores=self.scores)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Shortlist:
        data = np.load(path)
        return cls(indices=data["indices"], scores=data["scores"])

    def to_dataset(self, documents: DocumentSet, labels: LabelSet) -> Dataset:
        """A row a document: ``document_id``, ``document``, and its shortlist best first: ``labels`` (texts),
        ``label_indices`` (positions in the label set) and ``similarities`` (cosine)."""
        from datasets import Dataset

        if len(documents) != len(self):
            raise ValueError(f"{len(documents)} documents for a shortlist of {len(self)}")
        kept = [self.for_doc(i) for i in range(len(self))]
        return Dataset.from_dict(
            {
                "document_id": list(documents.ids),
                "document": list(documents.texts),
                "labels": [[labels.texts[j] for j in ids] for ids in kept],
                "label_indices": kept,
                "similarities": [[float(x) for x in self.scores[i][: len(ids)]] for i, ids in enumerate(kept)],
            }
        )

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> Shortlist:
        """The shortlist a `mine_shortlists` dataset holds (its ``label_indices`` and ``similarities``)."""
        rows, sims = dataset["label_indices"], dataset["similarities"]
        k = max((len(r) for r in rows), default=0)
        indices = np.full((len(rows), k), -1, dtype=np.int64)
        scores = np.full((len(rows), k), -np.inf, dtype=np.float32)
        for i, (r, x) in enumerate(zip(rows, sims)):
            indices[i, : len(r)], scores[i, : len(x)] = r, x
        return cls(indices=indices, scores=scores)


def normalize(embeddings: np.ndarray) -> np.ndarray:
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    faiss.normalize_L2(embeddings)
    return embeddings


class LabelIndex:
    """A FAISS inner-product index over normalised label embeddings."""

    def __init__(self, index: faiss.Index, config: IndexConfig | None = None) -> None:
        self.index = index
        self.config = config or IndexConfig()

    @classmethod
    def build(cls, label_embeddings: np.ndarray, config: IndexConfig | None = None) -> LabelIndex:
        config = config or IndexConfig()
        vectors = normalize(label_embeddings)
        n, dim = vectors.shape
        if n >= config.hnsw_threshold:
            index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = config.ef_construction
            index.hnsw.efSearch = config.ef_search
            logger.info("Building an HNSW index over %d labels (M=%d)", n, config.hnsw_m)
        else:
            index = faiss.IndexFlatIP(dim)
        index.add(vectors)
        return cls(index, config)

    @property
    def kind(self) -> str:
        return "hnsw" if isinstance(self.index, faiss.IndexHNSWFlat) else "flat"

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, doc_embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.index.ntotal)
        if isinstance(self.index, faiss.IndexHNSWFlat):
            # efSearch below k would return fewer than k neighbours.
            self.index.hnsw.efSearch = max(self.config.ef_search, k)
        scores, indices = self.index.search(normalize(doc_embeddings), k)
        return indices.astype(np.int64), scores

    def save(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp:
            faiss.write_index(self.index, str(tmp))
        atomic_write_text(str(path) + ".json", json.dumps(asdict(self.config)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> LabelIndex:
        config_path = Path(str(path) + ".json")
        config = IndexConfig(**json.loads(config_path.read_text())) if config_path.exists() else IndexConfig()
        return cls(faiss.read_index(str(path)), config)


def encode(
    model: SentenceTransformer,
    texts: list[str],
    batch_size: int = 64,
    show_progress_bar: bool = True,
    desc: str = "Encoding",
) -> np.ndarray:
    """Normalised float32 embeddings, in chunks so a progress bar says what is being encoded."""
    if not texts:
        return np.zeros((0, model.get_embedding_dimension()), dtype=np.float32)
    chunk = max(batch_size * 16, 1)
    out = []
    with tqdm(total=len(texts), desc=desc, unit="text", disable=not show_progress_bar) as bar:
        for start in range(0, len(texts), chunk):
            part = texts[start : start + chunk]
            out.append(model.encode(part, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False))
            bar.update(len(part))
    return normalize(np.concatenate(out))


class ShortlistMiner:
    """Encodes the labels once and returns each document's top-k labels.

    Example::

        miner = ShortlistMiner(model, labels)
        shortlist = miner.mine(["Bank raises rates ..."], k=10)
        shortlist.indices[0]  # label positions, best first
    """

    def __init__(
        self,
        model: SentenceTransformer,
        labels: LabelSet,
        config: IndexConfig | None = None,
        batch_size: int = 64,
        show_progress_bar: bool = True,
    ) -> None:
        self.model = model
        self.labels = labels
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.label_embeddings = encode(model, labels.texts, batch_size, show_progress_bar, "Encoding labels")
        self.index = LabelIndex.build(self.label_embeddings, config)

    def mine(self, texts: list[str], k: int = 10) -> Shortlist:
        doc_embeddings = encode(self.model, texts, self.batch_size, self.show_progress_bar, "Encoding documents")
        return self.mine_embeddings(doc_embeddings, k)

    def mine_embeddings(self, doc_embeddings: np.ndarray, k: int = 10) -> Shortlist:
        indices, scores = self.index.search(doc_embeddings, k)
        scores = np.where(indices >= 0, scores, -np.inf).astype(np.float32)
        return Shortlist(indices=indices, scores=scores)


def mine_shortlists(
    model: SentenceTransformer,
    labels: LabelsLike,
    documents: DocumentsLike,
    k: int = 10,
    batch_size: int = 64,
    show_progress_bar: bool = True,
    index_config: IndexConfig | None = None,
) -> Dataset:
    """Each document's ``k`` nearest labels under ``model``: the pairs LMTX asks its teacher about.

    In the spirit of sentence-transformers' ``mine_hard_negatives``: the labels are encoded and indexed with FAISS
    (exact search, HNSW from ``index_config.hnsw_threshold`` labels), the documents encoded and searched.

    Args:
        model: the bi-encoder that embeds labels and documents.
        labels: label texts, a ``{id: text}`` dict, a Dataset or an LF-XMC ``lbl.json`` (`load_labels`).
        documents: texts, a Dataset or an LF-XMC ``trn.json`` (`load_documents`).
        k: labels kept a document.
        batch_size: the encoding batch.
        show_progress_bar: bars for encoding labels and documents.
        index_config: how the label index is built.

    Returns:
        A Dataset, a row a document: ``document_id``, ``document``, ``labels`` (the label texts, best first),
        ``label_indices`` (their positions in the label set) and ``similarities`` (cosine).

    Example::

        from st_lmtx import mine_shortlists

        shortlists = mine_shortlists(model, ["Wheat", "Gold", "Crude oil"], ["Wheat prices rose ..."], k=2)
        shortlists[0]["labels"]  # the two nearest label texts, best first
    """
    labels, documents = load_labels(labels), load_documents(documents)
    if k < 1:
        raise ValueError("k must be >= 1")
    miner = ShortlistMiner(model, labels, index_config, batch_size, show_progress_bar)
    return miner.mine(documents.texts, k).to_dataset(documents, labels)
