"""Inputs: label sets and document sets, from Python objects, ``datasets.Dataset`` or LF-XMC JSONL files.

The LF-XMC layout (the one LMTX, MACLR and PECOS read) is a folder with ``lbl.json`` (one label a line:
``uid``, ``title``) and ``trn.json`` / ``tst.json`` (one document a line: ``uid``, ``title``, ``content``,
``target_ind``). A document's text is ``title + "\\n" + content``; ``target_ind`` (indices into the lines of
``lbl.json``) is ground truth and is only ever read for evaluation, never for training.

Every check here raises `InputError` naming what is wrong and where, because a silently skipped
document or a shifted label index would show up much later as a quietly worse model.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from st_lmtx.errors import InputError

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

LABEL_TEXT_FIELDS = ("text", "title", "label")
LABEL_ID_FIELDS = ("id", "uid")
DOC_ID_FIELDS = ("id", "uid")
TARGET_FIELDS = ("target_ind", "targets")


@dataclass(frozen=True)
class LabelSet:
    """The label space: ``ids[i]`` and ``texts[i]`` describe label ``i``; positions are the label indices used
    everywhere else (shortlists, pseudo-labels, ground truth)."""

    ids: list[str]
    texts: list[str]

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.texts):
            raise InputError(f"LabelSet has {len(self.ids)} ids but {len(self.texts)} texts")
        if not self.ids:
            raise InputError("the label set is empty")
        for i, (label_id, text) in enumerate(zip(self.ids, self.texts)):
            if not isinstance(text, str):
                raise InputError(f"label {i} (id {label_id!r}): text is {type(text).__name__}, not a string")
            if not text.strip():
                raise InputError(f"label {i} (id {label_id!r}): empty label text")
        duplicated_ids = [label_id for label_id, n in Counter(self.ids).items() if n > 1]
        if duplicated_ids:
            raise InputError(f"duplicate label id(s): {_preview(duplicated_ids)}")
        duplicated_texts = [text for text, n in Counter(self.texts).items() if n > 1]
        if duplicated_texts:
            # Legal (two ids may share a name) but the encoder cannot tell them apart, so say so.
            logger.warning(
                "%d label text(s) are shared by several label ids and will get identical embeddings: %s",
                len(duplicated_texts),
                _preview(duplicated_texts),
            )

    def __len__(self) -> int:
        return len(self.ids)

    def to_records(self) -> list[dict[str, str]]:
        return [{"id": label_id, "text": text} for label_id, text in zip(self.ids, self.texts)]


@dataclass(frozen=True)
class DocumentSet:
    """Documents to tag. ``targets`` (label indices per document) is ground truth, for evaluation only."""

    texts: list[str]
    ids: list[str] = field(default_factory=list)
    targets: list[list[int]] | None = None

    def __post_init__(self) -> None:
        if not self.texts:
            raise InputError("the document list is empty")
        if not self.ids:
            object.__setattr__(self, "ids", [str(i) for i in range(len(self.texts))])
        if len(self.ids) != len(self.texts):
            raise InputError(f"DocumentSet has {len(self.ids)} ids but {len(self.texts)} texts")
        for i, text in enumerate(self.texts):
            _check_document_text(text, f"document {i} (id {self.ids[i]!r})")
        if self.targets is not None and len(self.targets) != len(self.texts):
            raise InputError(f"DocumentSet has {len(self.targets)} target lists for {len(self.texts)} documents")

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def has_ground_truth(self) -> bool:
        return self.targets is not None

    def subset(self, indices: Sequence[int]) -> DocumentSet:
        return DocumentSet(
            texts=[self.texts[i] for i in indices],
            ids=[self.ids[i] for i in indices],
            targets=None if self.targets is None else [self.targets[i] for i in indices],
        )

    def shard(self, num_shards: int, index: int) -> DocumentSet:
        """Part ``index`` (0-based) of ``num_shards``: every ``num_shards``-th document from ``index`` on, as
        ``datasets.Dataset.shard(contiguous=False)``. The parts are disjoint, cover every document, and do not
        depend on anything but the order: N processes or machines each judge one, and their answers merge."""
        if not 0 <= index < num_shards:
            raise InputError(f"shard index must be in 0..{num_shards - 1}, got {index} (of {num_shards})")
        return self.subset(range(index, len(self), num_shards))

    def check_targets(self, num_labels: int) -> None:
        """Raise if a ground-truth index does not point into a label set of ``num_labels`` labels."""
        if self.targets is None:
            return
        for i, target in enumerate(self.targets):
            for t in target:
                if not isinstance(t, int) or isinstance(t, bool):
                    raise InputError(
                        f"document {i} (id {self.ids[i]!r}): target_ind {t!r} is a {type(t).__name__}, not a label "
                        "index (an integer)"
                    )
                if not 0 <= t < num_labels:
                    raise InputError(
                        f"document {i} (id {self.ids[i]!r}): target_ind {t!r} is out of range for {num_labels} labels"
                    )


# What the loaders accept: a user's labels and documents in any of the forms `load_labels` / `load_documents` read.
LabelsLike = Union[LabelSet, Sequence[str], Mapping[str, str], "Dataset", str, os.PathLike]
DocumentsLike = Union[DocumentSet, Sequence[str], "Dataset", str, os.PathLike]


def load_labels(source: LabelsLike) -> LabelSet:
    """Build a `LabelSet` from a list of label texts (each text is also its id), a ``{id: text}``
    dict, a ``datasets.Dataset`` (text column ``text``/``title``/``label``, optional ``id``/``uid``), or
    the path of an LF-XMC ``lbl.json`` (or of its folder)."""
    if isinstance(source, LabelSet):
        return source
    if isinstance(source, (str, os.PathLike)) and _looks_like_path(source):
        path = Path(source).expanduser()
        if path.is_dir():
            path = path / "lbl.json"
        ids, texts = [], []
        for line_no, record in read_jsonl(path):
            text = _field(record, LABEL_TEXT_FIELDS, path, line_no)
            if not isinstance(text, str) or not text.strip():  # here, where the file and line are known
                problem = (
                    "empty label text" if isinstance(text, str) else f"text is {type(text).__name__}, not a string"
                )
                raise InputError(f"{path}:{line_no}: {problem}")
            label_id = _optional_field(record, LABEL_ID_FIELDS)
            ids.append(str(label_id) if label_id is not None else str(len(ids)))
            texts.append(text)
        return LabelSet(ids=ids, texts=texts)
    if isinstance(source, str):
        raise InputError(f"labels: {source!r} is neither a file nor a folder")
    if isinstance(source, Mapping):
        return LabelSet(ids=[str(k) for k in source.keys()], texts=list(source.values()))
    if _is_dataset(source):
        text_col = _column(source.column_names, LABEL_TEXT_FIELDS, "labels dataset")
        id_col = next((c for c in LABEL_ID_FIELDS if c in source.column_names), None)
        texts = list(source[text_col])
        ids = [str(x) for x in source[id_col]] if id_col else [str(i) for i in range(len(texts))]
        return LabelSet(ids=ids, texts=texts)
    if isinstance(source, Iterable):
        texts = list(source)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InputError(f"label {i}: text is {type(text).__name__}, not a string")
        return LabelSet(ids=list(texts), texts=texts)
    raise InputError(f"cannot read labels from a {type(source).__name__}")


def load_documents(source: DocumentsLike, num_labels: int | None = None) -> DocumentSet:
    """Build a `DocumentSet` from a list of texts, a ``datasets.Dataset`` (column ``text``, or
    ``title`` + ``content``; optional ``id``/``uid`` and ``target_ind``), or an LF-XMC ``trn.json`` /
    ``tst.json`` path. With ``num_labels``, ground-truth indices are checked against the label set."""
    if isinstance(source, DocumentSet):
        docs = source
    elif isinstance(source, (str, os.PathLike)) and _looks_like_path(source):
        path = Path(source).expanduser()
        docs = _documents_from_records(read_jsonl(path), path)
    elif isinstance(source, str):
        raise InputError(f"documents: {source!r} is not a file; pass a list of texts to use a string as a document")
    elif _is_dataset(source):
        docs = _documents_from_records(((i + 1, row) for i, row in enumerate(source)), None)
    elif isinstance(source, Iterable):
        texts = list(source)
        for i, text in enumerate(texts):
            _check_document_text(text, f"document {i}")
        docs = DocumentSet(texts=texts)
    else:
        raise InputError(f"cannot read documents from a {type(source).__name__}")
    if num_labels is not None:
        docs.check_targets(num_labels)
    return docs


def load_lfxmc(folder: str | os.PathLike, split: str = "trn") -> tuple[LabelSet, DocumentSet]:
    """Read an LF-XMC folder: its labels and one split (``trn`` or ``tst``), ground truth checked."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder (expected lbl.json, trn.json, tst.json)")
    labels = load_labels(folder / "lbl.json")
    path = folder / f"{split}.json"
    if not path.exists():
        splits = sorted(p.stem for p in folder.glob("*.json") if p.stem != "lbl")
        raise InputError(f"{path} does not exist (splits here: {', '.join(splits) or 'none'})")
    return labels, load_documents(path, num_labels=len(labels))


def document_text(record: Mapping[str, Any], where: str) -> str:
    """``text``, or LF-XMC's ``title + "\\n" + content``."""
    if "text" in record:
        return record["text"]
    if "title" not in record and "content" not in record:
        raise InputError(f"{where}: missing field 'text' (or 'title' and 'content')")
    title, content = record.get("title", ""), record.get("content", "")
    for name, value in (("title", title), ("content", content)):
        if not isinstance(value, str):
            raise InputError(f"{where}: field {name!r} is {type(value).__name__}, not a string")
    return f"{title}\n{content}" if title and content else (title or content)


def _documents_from_records(records: Iterable[tuple[int, Mapping[str, Any]]], path: Path | None) -> DocumentSet:
    texts, ids, targets = [], [], []
    saw_targets = None
    for line_no, record in records:
        where = f"{path}:{line_no}" if path else f"row {line_no - 1}"
        text = document_text(record, where)
        _check_document_text(text, where)
        texts.append(text)
        doc_id = _optional_field(record, DOC_ID_FIELDS)
        ids.append(str(doc_id) if doc_id is not None else str(len(ids)))
        target = _optional_field(record, TARGET_FIELDS)
        has = target is not None
        if saw_targets is None:
            saw_targets = has
        elif has != saw_targets:
            raise InputError(f"{where}: 'target_ind' is present on some documents and missing on others")
        if has:
            if not isinstance(target, list):
                raise InputError(f"{where}: 'target_ind' must be a list of label indices, got {target!r}")
            targets.append(target)
    if not texts:
        raise InputError(f"the document list is empty{f' ({path})' if path else ''}")
    return DocumentSet(texts=texts, ids=ids, targets=targets if saw_targets else None)


def read_jsonl(path: Path, error: type[Exception] = InputError) -> Iterable[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` of a JSON-lines file, gzip-compressed or not; a missing file, a malformed or
    truncated line or a line that is not an object raises ``error`` naming the file and line."""
    if not path.exists():
        raise error(f"{path} does not exist")
    with open(path, "rb") as raw:
        compressed = raw.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path, "rt", encoding="utf-8") if compressed else open(path, encoding="utf-8") as f:
            for line_no, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as e:
                    raise error(f"{path}:{line_no}: malformed JSON ({e.msg} at column {e.colno})") from None
                except RecursionError:
                    raise error(f"{path}:{line_no}: malformed JSON (nested too deeply)") from None
                if not isinstance(record, dict):
                    raise error(f"{path}:{line_no}: expected a JSON object, got {type(record).__name__}")
                yield line_no, record
    except (OSError, EOFError, UnicodeDecodeError) as e:  # a truncated or corrupted file
        raise error(f"{path}: unreadable ({e})") from e


def _field(record: Mapping[str, Any], names: Sequence[str], path: Path, line_no: int) -> Any:
    for name in names:
        if name in record:
            return record[name]
    raise InputError(f"{path}:{line_no}: missing field {names[0]!r} (or {', '.join(map(repr, names[1:]))})")


def _optional_field(record: Mapping[str, Any], names: Sequence[str]) -> Any:
    return next((record[name] for name in names if name in record), None)


def _column(columns: Sequence[str], names: Sequence[str], what: str) -> str:
    for name in names:
        if name in columns:
            return name
    raise InputError(f"{what}: no column named {' or '.join(map(repr, names))} (columns: {list(columns)})")


def _check_document_text(text: Any, where: str) -> None:
    if not isinstance(text, str):
        raise InputError(f"{where}: text is {type(text).__name__}, not a string")
    if not text.strip():
        raise InputError(f"{where}: empty document text")


def _is_dataset(obj: Any) -> bool:
    return type(obj).__name__ == "Dataset" and hasattr(obj, "column_names")


def _looks_like_path(source: str | os.PathLike) -> bool:
    if isinstance(source, os.PathLike):
        return True
    return os.path.exists(os.path.expanduser(source)) or source.endswith((".json", ".jsonl"))


def _preview(items: Sequence[Any], n: int = 10) -> str:
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")
