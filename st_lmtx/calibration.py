"""Calibration: the teacher's scores made comparable across labels before positives are chosen.

A teacher's p(yes) mixes what it sees in the document with a bias for the label itself: some tags get "yes"
from a lenient judge whatever the document. Each method turns a judged pair's score into a calibrated log-odds
``c(d, l)``; positive selection (:func:`~st_lmtx.pseudo_labels.select_pairs`) ranks a document's "yes" labels
by it and can leave out the documents whose best calibrated score is weakest (``keep_documents``).

- ``"none"``: ``c(d, l) = logit p(d, l)``.
- ``"label-prior"``: ``c(d, l) = logit p(d, l) - prior(l)``, where ``prior(l)`` is the mean log-odds the
  teacher gave ``l`` over every document whose shortlist held it, shrunk towards the overall mean with the weight
  of ``shrinkage`` pairs: a label that nearly every document gets "yes" for is discounted.
- ``"contextual"`` (Zhao et al. 2021, "Calibrate Before Use"): ``c(d, l) = logit p(d, l) - mean_c logit p(c, l)``
  over content-free documents ``c`` (``CONTENT_FREE``): the score the teacher gives the label when there is
  nothing to read. It costs ``len(CONTENT_FREE)`` teacher calls per distinct shortlisted label, once (cached).

Measured on Reuters with the 1.5B local teacher (BENCHMARKS.md, "Calibration"): both corrections lower the
precision of the chosen positives there (frequent labels are frequent for a reason), so the recipes use
``"none"``; they are for teachers and label sets where one label's "yes" means little.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from st_lmtx.pseudo_labels import DocumentPseudoLabels, PseudoLabels
from st_lmtx.recipes import CALIBRATIONS

if TYPE_CHECKING:
    from st_lmtx.teacher.base import Teacher

# Content-free stand-ins for a document (Zhao et al. use "N/A", "[MASK]" and the empty string; an empty
# document is refused by the teacher, so "none" takes its place).
CONTENT_FREE: tuple[str, ...] = ("N/A", "[MASK]", "none")


def logit(p: float, eps: float = 1e-4) -> float:
    p = min(max(p, eps), 1 - eps)
    return math.log(p / (1 - p))


def content_free_log_odds(teacher: Teacher, label_texts: Sequence[str]) -> list[float]:
    """For each label, the mean log-odds of "yes" the teacher gives it for the :data:`CONTENT_FREE` documents
    (cached like any other answer), in the order of ``label_texts``."""
    judged = teacher.judge(list(CONTENT_FREE), [list(label_texts)] * len(CONTENT_FREE), desc="Teacher (content-free)")
    return [sum(logit(row[i].score) for row in judged.judgments) / len(CONTENT_FREE) for i in range(len(label_texts))]


def label_priors(pseudo: PseudoLabels, shrinkage: float = 5.0) -> dict[int, float]:
    """Each judged label's mean log-odds over the documents that shortlisted it, shrunk towards the overall mean
    (a label judged for few documents keeps close to it)."""
    sums: dict[int, float] = defaultdict(float)
    counts: dict[int, int] = defaultdict(int)
    for d in pseudo.docs:
        for j in d.judged:
            sums[j.label] += logit(j.score)
            counts[j.label] += 1
    total = sum(counts.values())
    overall = sum(sums.values()) / total if total else 0.0
    return {l: (sums[l] + shrinkage * overall) / (counts[l] + shrinkage) for l in counts}


def calibrate(
    pseudo: PseudoLabels,
    method: str = "none",
    content_free: Mapping[int, float] | None = None,
    shrinkage: float = 5.0,
) -> PseudoLabels:
    """A copy of ``pseudo`` whose judged labels carry ``calibrated`` log-odds (verdicts and raw scores unchanged).

    Args:
        pseudo: the round's judged shortlists
        method: one of :data:`CALIBRATIONS`
        content_free: for ``"contextual"``: label id -> mean log-odds of "yes" for the content-free documents
        shrinkage: for ``"label-prior"``: how many pairs' worth of the overall mean each label's prior starts with

    Example::

        calibrated = calibrate(pseudo, "label-prior")
        pairs = select_pairs(calibrated, len(labels), SelectionConfig(positives="top-yes"))
    """
    if method not in CALIBRATIONS:
        raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {method!r}")
    if method == "contextual" and content_free is None:
        raise ValueError("contextual calibration needs the content-free scores of the judged labels")
    prior: Mapping[int, float] = {}
    if method == "label-prior":
        prior = label_priors(pseudo, shrinkage)
    elif method == "contextual":
        missing = {j.label for d in pseudo.docs for j in d.judged} - set(content_free)
        if missing:
            raise ValueError(f"no content-free score for {len(missing)} judged label(s), e.g. {sorted(missing)[:5]}")
        prior = content_free
    docs = [
        DocumentPseudoLabels(d.doc, [replace(j, calibrated=logit(j.score) - prior.get(j.label, 0.0)) for j in d.judged])
        for d in pseudo.docs
    ]
    return PseudoLabels(docs)
