"""OracleTeacher: answers from ground truth. An evaluation tool, never a default.

It gives the ceiling a perfect judge would reach on the same shortlists, and, with ``flip_fraction``, how
the method degrades with a judge that is wrong on a given share of pairs. Using it to train a model that is
then reported as zero-shot would leak the labels: it exists for ablations and benchmarks only.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

from st_lmtx.inputs import DocumentSet, InputError, LabelSet
from st_lmtx.teacher.base import Emit, Judgment, PendingDocument, Teacher, TeacherUsage


class OracleTeacher(Teacher):
    """Say "yes" exactly to the document's ground-truth labels; flip a deterministic ``flip_fraction`` of
    answers (the same pairs on every run, chosen by a hash of the pair and ``seed``).

    Example::

        labels, train = load_lfxmc("data/reuters21578", "trn")
        teacher = OracleTeacher(labels, train, flip_fraction=0.2)
    """

    backend = "oracle"

    def __init__(
        self,
        labels: LabelSet,
        documents: DocumentSet,
        flip_fraction: float = 0.0,
        seed: int = 0,
        **teacher_kwargs: Any,
    ) -> None:
        teacher_kwargs.setdefault("show_progress_bar", False)
        super().__init__(**teacher_kwargs)
        if documents.targets is None:
            raise InputError("OracleTeacher needs documents with ground truth (target_ind)")
        if not 0.0 <= flip_fraction <= 1.0:
            raise ValueError(f"flip_fraction must be in [0, 1], got {flip_fraction}")
        self.flip_fraction = flip_fraction
        self.seed = seed
        self._truth: dict[str, set[str]] = defaultdict(set)
        for text, targets in zip(documents.texts, documents.targets):
            self._truth[text].update(labels.texts[t] for t in targets)

    @property
    def model_name(self) -> str:
        return "oracle" if not self.flip_fraction else f"oracle-flip{self.flip_fraction:g}"

    def config(self) -> dict[str, Any]:
        return {**super().config(), "flip_fraction": self.flip_fraction, "seed": self.seed}

    def _flipped(self, doc: str, label: str) -> bool:
        if not self.flip_fraction:
            return False
        digest = hashlib.sha256(f"{self.seed}\0{doc}\0{label}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.flip_fraction

    def _judge_documents(self, pending: list[PendingDocument], emit: Emit, run: TeacherUsage) -> None:
        for item in pending:
            if item.doc not in self._truth:
                raise InputError("OracleTeacher was asked about a document it has no ground truth for")
            for j in item.positions:
                label = item.labels[j]
                yes = (label in self._truth[item.doc]) != self._flipped(item.doc, label)
                emit(item, j, Judgment(label, "yes" if yes else "no", 1.0 if yes else 0.0, False, None), 0, 0)
