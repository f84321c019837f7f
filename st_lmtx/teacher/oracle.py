"""OracleTeacher: answers from ground truth. An evaluation tool, never a default.

It gives the ceiling a perfect judge would reach on the same shortlists, and, with ``flip_fraction``, how
the method degrades with a judge that is wrong on a given share of pairs. ``flip_towards`` picks the kind of
judge that is modelled: ``"both"`` (the default) one that errs in either direction, ``"yes"`` a lenient judge
that says "yes" too often (only true "no" answers are flipped, as LLM judges tend to do), ``"no"`` a strict
one that misses true labels (only true "yes" answers are flipped). Using it to train a model that is then
reported as zero-shot would leak the labels: it exists for ablations and benchmarks only.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Any

from st_lmtx.inputs import DocumentSet, InputError, LabelSet
from st_lmtx.teacher.base import Answered, Emit, Judgment, PendingDocument, Teacher, TeacherUsage


class OracleTeacher(Teacher):
    """Say "yes" exactly to the document's ground-truth labels, then flip a deterministic share of the answers:
    the same pairs on every run, chosen by a hash of (``seed``, document, label) falling below
    ``flip_fraction``.

    ``flip_towards`` says which answers may be flipped, and so what ``flip_fraction`` is a share of:

    - ``"both"`` (default): any answer; ``flip_fraction`` is the share of all pairs answered wrongly.
    - ``"yes"``: only true "no" answers, which become "yes"; true "yes" answers stay "yes".
      ``flip_fraction`` is the share of the pairs whose label is *not* the document's that are answered
      "yes" (false positives / all negative pairs); the share of all answers that are "yes" is then
      ``p + flip_fraction * (1 - p)``, ``p`` the share of true pairs in the shortlists. This models a
      lenient judge.
    - ``"no"``: only true "yes" answers, which become "no"; ``flip_fraction`` is the share of the true
      pairs answered "no" (a strict judge that misses labels).

    The pairs a hash selects are the same in every mode, so ``"yes"`` flips exactly the negative pairs and
    ``"no"`` exactly the positive pairs that ``"both"`` flips with the same ``seed`` and ``flip_fraction``.

    Example::

        labels, train = load_lfxmc("data/reuters21578", "trn")
        teacher = OracleTeacher(labels, train, flip_fraction=0.2)
        lenient = OracleTeacher(labels, train, flip_fraction=0.4, flip_towards="yes")
    """

    backend = "oracle"
    FLIP_TOWARDS = ("both", "yes", "no")

    def __init__(
        self,
        labels: LabelSet,
        documents: DocumentSet,
        flip_fraction: float = 0.0,
        seed: int = 0,
        flip_towards: str = "both",
        **teacher_kwargs: Any,
    ) -> None:
        teacher_kwargs.setdefault("show_progress_bar", False)
        super().__init__(**teacher_kwargs)
        if documents.targets is None:
            raise InputError("OracleTeacher needs documents with ground truth (target_ind)")
        if not 0.0 <= flip_fraction <= 1.0:
            raise ValueError(f"flip_fraction must be in [0, 1], got {flip_fraction}")
        if flip_towards not in self.FLIP_TOWARDS:
            choices = ", ".join(map(repr, self.FLIP_TOWARDS))
            raise ValueError(f"flip_towards must be one of {choices}, got {flip_towards!r}")
        self.flip_fraction = flip_fraction
        self.flip_towards = flip_towards
        self.seed = seed
        self._truth: dict[str, set[str]] = defaultdict(set)
        for text, targets in zip(documents.texts, documents.targets):
            self._truth[text].update(labels.texts[t] for t in targets)

    @property
    def model_name(self) -> str:
        if not self.flip_fraction:
            return "oracle"
        name = f"oracle-flip{self.flip_fraction:g}"
        return name if self.flip_towards == "both" else f"{name}-{self.flip_towards}"

    def config(self) -> dict[str, Any]:
        config = {**super().config(), "flip_fraction": self.flip_fraction, "seed": self.seed}
        if self.flip_towards != "both":  # absent for "both", so caches and runs made before the option stay valid
            config["flip_towards"] = self.flip_towards
        return config

    def _flipped(self, doc: str, label: str) -> bool:
        if not self.flip_fraction:
            return False
        digest = hashlib.sha256(f"{self.seed}\0{doc}\0{label}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.flip_fraction

    def _judge_documents(self, pending: list[PendingDocument], emit: Emit, run: TeacherUsage) -> None:
        for item in pending:
            self.check_budget(run, next_pairs=len(item.positions))
            if item.doc not in self._truth:
                raise InputError("OracleTeacher was asked about a document it has no ground truth for")
            for j in item.positions:
                label = item.labels[j]
                true = label in self._truth[item.doc]
                # "yes" mode flips only negatives, "no" mode only positives, "both" either.
                may_flip = self.flip_towards == "both" or (self.flip_towards == "yes") != true
                yes = true != (may_flip and self._flipped(item.doc, label))
                emit([Answered(item, j, Judgment(label, "yes" if yes else "no", 1.0 if yes else 0.0, False, None))])
