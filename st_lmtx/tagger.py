"""LMTXTagger: a bi-encoder, its label set and a FAISS index over the label embeddings. No LLM at inference.

A saved tagger is an ordinary SentenceTransformer folder with three more files beside the model:
``lmtx_labels.jsonl`` (label ids and texts, in index order), ``lmtx_index.faiss`` (+ ``.json``, its build
configuration) and ``lmtx_tagger.json``. ``SentenceTransformer(folder)`` still loads the folder as a plain
model; ``LMTXTagger.load(folder)`` loads the tagger.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from sentence_transformers import SentenceTransformer

from st_lmtx.errors import InputError, NotATaggerError
from st_lmtx.files import atomic_path, atomic_write_text
from st_lmtx.inputs import LabelSet, load_documents, load_labels
from st_lmtx.layout import INDEX_FILE, LABELS_FILE, UPLOAD_IGNORE
from st_lmtx.models import load_model
from st_lmtx.shortlist import IndexConfig, LabelIndex, encode

logger = logging.getLogger(__name__)

# A trainer's output folder keeps its work files (per-round data, the teacher's answer cache: document texts)
# here; they are never uploaded.
TAGGER_FILE = "lmtx_tagger.json"


@dataclass
class Tag:
    """One predicted label: its id, text and cosine similarity to the document."""

    id: str
    text: str
    score: float


class LMTXTagger:
    """Tags documents with the labels whose embeddings are nearest to theirs.

    Example::

        tagger = LMTXTagger(model, ["Wheat", "Interest Rates", "Crude Oil"])
        tagger.predict(["The central bank cut its key rate by half a point."], top_k=2)
        # [[Tag(id='Interest Rates', text='Interest Rates', score=0.61), Tag(...)]]
        tagger.save("my-tagger")
        LMTXTagger.load("my-tagger").predict([...])
    """

    def __init__(
        self,
        model: SentenceTransformer | str,
        labels: LabelSet | Sequence[str] | dict[str, str] | str,
        index: LabelIndex | None = None,
        index_config: IndexConfig | None = None,
        batch_size: int = 64,
        show_progress_bar: bool = False,
    ) -> None:
        self.model = load_model(model)
        self.labels = load_labels(labels)
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        if index is None:
            embeddings = encode(self.model, self.labels.texts, batch_size, show_progress_bar, "Encoding labels")
            index = LabelIndex.build(embeddings, index_config)
        if len(index) != len(self.labels):
            raise InputError(f"the index holds {len(index)} labels but the label set has {len(self.labels)}")
        self.index = index

    def predict(self, documents: Sequence[str], top_k: int = 5) -> list[list[Tag]]:
        """The ``top_k`` labels of every document, best first."""
        docs = load_documents(list(documents))
        embeddings = encode(self.model, docs.texts, self.batch_size, self.show_progress_bar, "Tagging")
        indices, scores = self.index.search(embeddings, top_k)
        return [
            [Tag(self.labels.ids[j], self.labels.texts[j], float(s)) for j, s in zip(row_i, row_s) if j >= 0]
            for row_i, row_s in zip(indices, scores)
        ]

    def save(self, path: str | os.PathLike, **save_kwargs) -> None:
        """Save the model and, beside it, the label set and the index."""
        path = Path(path)
        self.model.save(str(path), **save_kwargs)
        save_label_files(path, self.labels, self.index)

    def push_to_hub(self, repo_id: str, token: str | None = None, private: bool | None = None) -> str:
        """Save to a temporary folder and upload it: model, label set, index."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            self.save(tmp)
            return push_folder_to_hub(tmp, repo_id, token=token, private=private)

    @classmethod
    def load(cls, path_or_repo: str | os.PathLike, **kwargs) -> LMTXTagger:
        """Load from a folder written by `save` or by ``LMTXTrainer``, or from a Hub repository id."""
        path = Path(path_or_repo)
        if not path.is_dir():
            path = Path(_download(str(path_or_repo)))
        if not (path / LABELS_FILE).exists():
            raise NotATaggerError(f"{path} has no {LABELS_FILE}: it is a plain model, not an LMTX tagger")
        labels = LabelSet(**_read_labels(path / LABELS_FILE))
        index = LabelIndex.load(path / INDEX_FILE) if (path / INDEX_FILE).exists() else None
        return cls(SentenceTransformer(str(path)), labels, index=index, **kwargs)


def files_to_upload(folder: str | os.PathLike) -> list[str]:
    """The files `push_folder_to_hub` uploads from ``folder`` (relative paths), work files excluded."""
    from huggingface_hub.utils import filter_repo_objects

    folder = Path(folder)
    paths = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return list(filter_repo_objects(paths, ignore_patterns=UPLOAD_IGNORE))


def push_folder_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    commit_message: str = "Add LMTX tagger",
) -> str:
    """Upload a saved tagger (or a trainer's output folder, without its work files) to the Hub."""
    from huggingface_hub import HfApi

    folder = Path(folder)
    if not (folder / LABELS_FILE).exists():
        raise NotATaggerError(f"{folder} is not a saved LMTX tagger (no {LABELS_FILE})")
    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    commit = api.upload_folder(
        repo_id=repo_id, folder_path=str(folder), ignore_patterns=UPLOAD_IGNORE, commit_message=commit_message
    )
    return commit.commit_url


def save_label_files(path: Path, labels: LabelSet, index: LabelIndex) -> None:
    path.mkdir(parents=True, exist_ok=True)
    with atomic_path(path / LABELS_FILE) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for record in labels.to_records():
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    index.save(path / INDEX_FILE)
    atomic_write_text(
        path / TAGGER_FILE,
        json.dumps({"num_labels": len(labels), "index": index.kind, "index_config": asdict(index.config)}, indent=2),
    )


def _read_labels(path: Path) -> dict[str, list[str]]:
    ids, texts = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            ids.append(record["id"])
            texts.append(record["text"])
    return {"ids": ids, "texts": texts}


def _download(repo_id: str) -> str:
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id)
    except Exception as e:  # offline, missing repo, auth: say which, keep the cause
        raise NotATaggerError(f"{repo_id!r} is not a local folder and could not be fetched from the Hub: {e}") from e


def tags_to_json(tags: list[Tag]) -> list[dict]:
    return [asdict(tag) for tag in tags]
