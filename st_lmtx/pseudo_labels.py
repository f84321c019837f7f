"""Pseudo-labels: from a shortlist and the teacher's judgments to the training pairs of a round.

Positive selection policies (``positives``):

- ``"random-yes"`` (the reference code): every "yes" label is a positive; one is drawn at random each time
  the document is used (once per epoch).
- ``"top-yes"``: only the "yes" label with the highest teacher score, if that score is at least
  ``threshold``. With a graded teacher (p(yes)) this keeps the judge's most confident choice.
- ``"score-weighted"``: one "yes" drawn per use with probability proportional to its score.

Labels are ranked by their calibrated score when :func:`st_lmtx.calibration.calibrate` has set one, else by
the teacher's score. ``keep_documents`` below 1 keeps only that share of the documents with a positive: for each
label, the documents whose positive it is with the highest scores (ties at the cut are kept: a teacher with no
graded scores keeps them all).
Documents with no usable positive are left out of the round. Every "yes" label of a document is a known
positive: the loss never uses it as that document's in-batch negative. Optionally one "no" label per use is
added as a hard negative (the paper found this hurts; off by default).
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from datasets import Dataset

from st_lmtx.files import atomic_path
from st_lmtx.inputs import DocumentSet, LabelSet
from st_lmtx.recipes import POSITIVE_POLICIES, PositivePolicy
from st_lmtx.shortlist import Shortlist
from st_lmtx.teacher.base import Judgment

POLICIES: tuple[str, ...] = POSITIVE_POLICIES

# Where a round's answers say the teacher may be teaching little (BENCHMARKS.md): the 0.5B teacher said "yes" for
# 11% of Reuters' documents and its top-scored label was worse than the untrained encoder's own top-1; the 1.5B
# said "yes" to 68% of the shortlisted pairs on a domain not in the repository.
STRICT_DOCUMENT_SHARE = 0.25
LENIENT_YES_RATE = 0.5
UNPARSEABLE_SHARE = 0.02


def teacher_warnings(stats: dict[str, float]) -> list[str]:
    """What a round's pseudo-label statistics (:meth:`PseudoLabels.stats`) say about the teacher that a user
    should hear: a judge that accepts a label for few documents, one that says "yes" to most pairs, or one whose
    answers are often neither yes nor no. Empty when none applies."""
    warnings = []
    docs, pairs = stats["documents"], stats["pairs"]
    with_yes, rate, unparseable = stats["documents_with_yes"], stats["yes_rate"], stats["unparseable"]
    if docs and with_yes / docs < STRICT_DOCUMENT_SHARE:
        warnings.append(
            f"the teacher said \"yes\" for only {with_yes} of {docs} documents ({with_yes / docs:.0%}), so the round "
            "trains on those alone. A judge this strict (or this weak: the 0.5B teacher did so on Reuters, and "
            "the encoder got worse) may not improve it; read a sample of pseudo_labels.jsonl or use a larger "
            "teacher."
        )
    if pairs and rate >= LENIENT_YES_RATE:
        warnings.append(
            f"the teacher said \"yes\" to {rate:.0%} of the shortlisted pairs: a lenient judge, whose \"yes\" alone "
            "says little. positives='random-yes' and stop_metric='llm_P@1' (the reference recipe) suffer most; "
            "the default recipe ranks a document's labels by the teacher's score."
        )
    if pairs and unparseable / pairs > UNPARSEABLE_SHARE:
        warnings.append(
            f"{unparseable} of {pairs} answers ({unparseable / pairs:.1%}) were neither yes nor no and count as "
            "no: check the endpoint's model and the prompt (the answers are in the teacher's cache)."
        )
    return warnings


@dataclass
class JudgedLabel:
    label: int
    verdict: str
    score: float
    calibrated: float | None = None  # log-odds set by st_lmtx.calibration; None: rank by the raw score

    @property
    def rank_score(self) -> float:
        return self.score if self.calibrated is None else self.calibrated


@dataclass
class DocumentPseudoLabels:
    """One document's shortlist with the teacher's verdicts, best shortlist rank first."""

    doc: int
    judged: list[JudgedLabel] = field(default_factory=list)

    @property
    def yes(self) -> list[JudgedLabel]:
        return [j for j in self.judged if j.verdict == "yes"]

    @property
    def no(self) -> list[JudgedLabel]:
        return [j for j in self.judged if j.verdict == "no"]


@dataclass
class PseudoLabels:
    """The judged shortlists of a round (``docs[i].doc`` indexes the round's document set)."""

    docs: list[DocumentPseudoLabels]

    @classmethod
    def from_judgments(cls, shortlist: Shortlist, judgments: Sequence[Sequence[Judgment]]) -> PseudoLabels:
        docs = []
        for i, row in enumerate(judgments):
            label_ids = shortlist.for_doc(i)
            docs.append(
                DocumentPseudoLabels(i, [JudgedLabel(l, j.verdict, j.score) for l, j in zip(label_ids, row)])
            )
        return cls(docs)

    def merged_with(self, earlier: PseudoLabels) -> PseudoLabels:
        """These judgments plus the earlier rounds' judgments of labels no longer shortlisted (same documents)."""
        if len(earlier.docs) != len(self.docs):
            raise ValueError("can only merge pseudo-labels of the same documents")
        docs = []
        for now, before in zip(self.docs, earlier.docs):
            seen = {j.label for j in now.judged}
            docs.append(DocumentPseudoLabels(now.doc, now.judged + [j for j in before.judged if j.label not in seen]))
        return PseudoLabels(docs)

    def stats(self) -> dict[str, float]:
        pairs = sum(len(d.judged) for d in self.docs)
        yes = sum(len(d.yes) for d in self.docs)
        unparseable = sum(j.verdict == "unparseable" for d in self.docs for j in d.judged)
        with_yes = sum(bool(d.yes) for d in self.docs)
        return {
            "documents": len(self.docs),
            "pairs": pairs,
            "yes": yes,
            "yes_rate": yes / pairs if pairs else 0.0,
            "unparseable": unparseable,
            "documents_with_yes": with_yes,
        }

    def save(self, path: str | os.PathLike, doc_ids: Sequence[str], labels: LabelSet) -> None:
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for d in self.docs:
                record = {
                    "doc": d.doc,
                    "doc_id": doc_ids[d.doc],
                    "judged": [
                        {"label": j.label, "label_id": labels.ids[j.label], "verdict": j.verdict, "score": j.score}
                        for j in d.judged
                    ],
                }
                f.write(json.dumps(record, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> PseudoLabels:
        docs = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                judged = [JudgedLabel(j["label"], j["verdict"], j["score"]) for j in record["judged"]]
                docs.append(DocumentPseudoLabels(record["doc"], judged))
        return cls(docs)


@dataclass
class SelectionConfig:
    """How pseudo-labels become training pairs."""

    positives: PositivePolicy = "random-yes"
    threshold: float = 0.0
    hard_negatives: bool = False
    epochs: int = 1
    seed: int = 42
    keep_documents: float = 1.0
    # Whether the shortlist was mined by a model the teacher has trained (round 2 on): ``student-yes`` then trusts
    # the shortlist's order among the "yes" labels.
    trained_shortlist: bool = False

    def __post_init__(self) -> None:
        if self.positives not in POLICIES:
            raise ValueError(f"positives must be one of {POLICIES}, got {self.positives!r}")
        if not 0.0 < self.keep_documents <= 1.0:
            raise ValueError(f"keep_documents must be in (0, 1], got {self.keep_documents}")
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1")


def candidate_positives(d: DocumentPseudoLabels, config: SelectionConfig) -> list[JudgedLabel]:
    """The labels a document may be trained on, under the policy:

    - ``random-yes`` / ``score-weighted``: every "yes" (one drawn per use);
    - ``top-yes``: the "yes" with the highest (calibrated) score;
    - ``student-yes``: ``top-yes`` while the shortlist comes from the untrained model, then the "yes" the
      shortlisting model ranks highest (``d.judged`` is in shortlist order). Once the student has learnt from
      the teacher, its ranking separates a document's "yes" labels better than the teacher's own scores do
      (BENCHMARKS.md: trained-positive precision 0.79 / 0.77 -> 0.83 / 0.85 in Reuters rounds 2 / 3).
    """
    yes = [j for j in d.yes if j.score >= config.threshold]
    if not yes:
        return yes
    if config.positives == "student-yes" and config.trained_shortlist:
        return [yes[0]]
    if config.positives in ("top-yes", "student-yes"):
        return [max(yes, key=lambda j: j.rank_score)]
    return yes


def usable_documents(pseudo: PseudoLabels, config: SelectionConfig) -> list[tuple[DocumentPseudoLabels, list[JudgedLabel]]]:
    """The documents a round trains on, each with its candidate positives (``keep_documents`` applied)."""
    usable = [(d, candidate_positives(d, config)) for d in pseudo.docs]
    usable = [(d, pos) for d, pos in usable if pos]
    if config.keep_documents < 1.0 and usable:
        # The cut is made within each label (the document's best positive): a teacher that is less sure of some
        # labels than others would otherwise lose those labels altogether (Reuters' "earn", BENCHMARKS.md).
        groups: dict[int, list[float]] = {}
        for _, pos in usable:
            best = max(pos, key=lambda j: j.rank_score)
            groups.setdefault(best.label, []).append(best.rank_score)
        cuts = {l: sorted(v, reverse=True)[max(0, math.ceil(config.keep_documents * len(v)) - 1)] for l, v in groups.items()}
        usable = [(d, pos) for d, pos in usable if (b := max(pos, key=lambda j: j.rank_score)).rank_score >= cuts[b.label]]
    return usable


@dataclass
class TrainingPair:
    """One training row: document ``doc``'s ``positive`` label, an optional hard ``negative``, and all its
    "yes" labels (``known``: never its negatives)."""

    doc: int
    positive: int
    negative: int | None
    known: list[int]


def select_pairs(pseudo: PseudoLabels, num_labels: int, config: SelectionConfig | None = None) -> list[TrainingPair]:
    """One pair per document with a usable positive and per epoch; draws use a generator seeded with
    ``config.seed`` so a round is reproducible."""
    config = config or SelectionConfig()
    rng = random.Random(config.seed)
    usable = usable_documents(pseudo, config)
    pairs = []
    for _ in range(config.epochs):
        for d, positives in usable:
            if config.positives == "score-weighted":
                positive = rng.choices(positives, weights=[max(p.score, 1e-6) for p in positives])[0]
            else:
                positive = rng.choice(positives)
            negative = _hard_negative(d, num_labels, rng) if config.hard_negatives else None
            pairs.append(TrainingPair(d.doc, positive.label, negative, [j.label for j in d.yes]))
    return pairs


def pairs_to_dataset(pairs: Sequence[TrainingPair], documents: DocumentSet, labels: LabelSet) -> Dataset:
    """Columns ``anchor`` (document text), ``positive`` (label text), ``negative`` (when the pairs have hard
    negatives) and ``label``: the ids :class:`LMTXTripletLoss` masks with (the positive's, the negative's,
    then all the document's "yes" labels, -1 padded to a common width)."""
    with_negatives = any(p.negative is not None for p in pairs)
    width = max((len(p.known) for p in pairs), default=0)
    rows: dict[str, list] = {"anchor": [], "positive": []}
    if with_negatives:
        rows["negative"] = []
    rows["label"] = []
    for p in pairs:
        rows["anchor"].append(documents.texts[p.doc])
        rows["positive"].append(labels.texts[p.positive])
        ids = [p.positive]
        if with_negatives:
            rows["negative"].append(labels.texts[p.negative])
            ids.append(p.negative)
        rows["label"].append(ids + p.known + [-1] * (width - len(p.known)))
    return Dataset.from_dict(rows)


def build_pseudo_label_dataset(
    pseudo: PseudoLabels,
    documents: DocumentSet,
    labels: LabelSet,
    config: SelectionConfig | None = None,
) -> Dataset:
    """The training ``datasets.Dataset`` of a round: :func:`select_pairs` then :func:`pairs_to_dataset`."""
    return pairs_to_dataset(select_pairs(pseudo, len(labels), config), documents, labels)


def _hard_negative(d: DocumentPseudoLabels, num_labels: int, rng: random.Random) -> int:
    if d.no:
        return rng.choice(d.no).label
    # No "no" in the shortlist: any label that is not a "yes" keeps the column filled.
    yes = {j.label for j in d.yes}
    while True:
        candidate = rng.randrange(num_labels)
        if candidate not in yes or len(yes) >= num_labels:
            return candidate
