"""Pseudo-labels: from a shortlist and the teacher's judgments to the training pairs of a round.

A document's positive (``positives``):

- ``"top-yes"`` (the default recipe): the "yes" label the teacher scores highest (with a graded teacher, its
  most confident choice; with yes/no answers, the first "yes" in shortlist order).
- ``"random-yes"`` (the reference code): every "yes" label is a candidate; one is drawn at random each time the
  document is used.

Documents with no "yes" are left out of the round. Every "yes" label of a document is a known positive: the loss
never uses it as that document's in-batch negative.

The training-data builders take judged shortlists (`judge_shortlists`' Dataset) and return the rows of a loss:
`build_lmtx_dataset` for `LMTXTripletLoss` (what `LMTXTrainer` trains on), `build_distillation_dataset` for
sentence-transformers' ``DistillKLDivLoss`` (the teacher's p(yes) over the whole shortlist as the target).
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from datasets import Dataset, Features, List, Value

from st_lmtx.files import atomic_path
from st_lmtx.inputs import DocumentSet, LabelSet

# A round's answers that suggest a judge teaching little: "yes" for few documents, "yes" to most pairs, or many
# answers that are neither.
STRICT_DOCUMENT_SHARE = 0.25
LENIENT_YES_RATE = 0.5
UNPARSEABLE_SHARE = 0.02


def teacher_warnings(stats: PseudoLabelStats, ungraded: str | None = None) -> list[str]:
    """What a round's pseudo-label statistics (`PseudoLabels.stats`) say about the teacher that a user
    should hear: a judge that accepts a label for few documents, one that says "yes" to most pairs, one whose
    answers are often neither yes nor no, or one whose scores are not probabilities although asked to be
    (``ungraded``: the teacher's reason). Empty when none applies."""
    warnings = []
    if ungraded:
        warnings.append(
            f"the teacher's answers carry no p(yes) ({ungraded}): each \"yes\" scores 1.0, so a document's first "
            '"yes" in shortlist order is its positive, not the one the teacher is surest of. Serve the model where '
            "logprobs are returned (vLLM, llama.cpp's server) for graded answers."
        )
    docs, pairs = stats.documents, stats.pairs
    with_yes, rate, unparseable = stats.documents_with_yes, stats.yes_rate, stats.unparseable
    if docs and with_yes / docs < STRICT_DOCUMENT_SHARE:
        warnings.append(
            f'the teacher said "yes" for only {with_yes} of {docs} documents ({with_yes / docs:.0%}), so the round '
            "trains on those alone. A judge this strict (or this weak) may not improve the encoder: read a sample "
            "of pseudo_labels.jsonl, or use a larger teacher."
        )
    if pairs and rate >= LENIENT_YES_RATE:
        warnings.append(
            f'the teacher said "yes" to {rate:.0%} of the shortlisted pairs: a lenient judge, whose "yes" alone '
            "says little. The default recipe ranks a document's labels by the teacher's score; the reference "
            "recipe (a random yes, stop on llm_P@1) suffers most. The tagger learns the judge's errors: a stronger "
            "judge is likely to teach it more, most on a domain this one knows little (docs/teachers.md, 'What a "
            "stronger teacher buys'). Point a new run, in a new output folder, at a larger model behind any "
            "OpenAI-compatible endpoint: --teacher URL --teacher-model NAME (OpenAITeacher in Python)."
        )
    if pairs and unparseable / pairs > UNPARSEABLE_SHARE:
        warnings.append(
            f"{unparseable} of {pairs} answers ({unparseable / pairs:.1%}) were neither yes nor no and count as "
            "no: check the endpoint's model and the prompt (the answers are in the teacher's cache)."
        )
    return warnings


@dataclass
class PseudoLabelStats:
    """What a round's judged shortlists hold. ``instruction_like_documents``: documents that seem to address the
    judge; ``all_yes_documents``: documents it said "yes" to for every label (both counted by the teacher)."""

    documents: int
    pairs: int
    yes: int
    yes_rate: float
    unparseable: int
    documents_with_yes: int
    instruction_like_documents: int = 0
    all_yes_documents: int = 0


@dataclass
class JudgedLabel:
    label: int
    verdict: str
    score: float


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
    def from_dataset(cls, judged: Dataset) -> PseudoLabels:
        """The judged shortlists of `judge_shortlists`' Dataset (its ``label_indices``, ``verdicts`` and
        ``p_yes``); a pair with no verdict (a budget stopped it) is left out."""
        missing = [c for c in ("label_indices", "verdicts", "p_yes") if c not in judged.column_names]
        if missing:
            raise ValueError(
                "judged shortlists need the columns label_indices, verdicts and p_yes (missing: "
                f"{', '.join(missing)}): build them with mine_shortlists and judge_shortlists"
            )
        docs = []
        for i, (ids, verdicts, scores) in enumerate(zip(judged["label_indices"], judged["verdicts"], judged["p_yes"])):
            docs.append(DocumentPseudoLabels(i, [JudgedLabel(k, v, s) for k, v, s in zip(ids, verdicts, scores) if v]))
        return cls(docs)

    def to_dataset(self, documents: DocumentSet, labels: LabelSet) -> Dataset:
        """As `judge_shortlists` returns them (``document_id``, ``document``, ``labels``, ``label_indices``,
        ``verdicts``, ``p_yes``), for the builders."""
        judged = [d.judged for d in self.docs]
        return Dataset.from_dict(
            {
                "document_id": [documents.ids[d.doc] for d in self.docs],
                "document": [documents.texts[d.doc] for d in self.docs],
                "labels": [[labels.texts[j.label] for j in row] for row in judged],
                "label_indices": [[j.label for j in row] for row in judged],
                "verdicts": [[j.verdict for j in row] for row in judged],
                "p_yes": [[j.score for j in row] for row in judged],
            },
            features=JUDGED_FEATURES,
        )

    def merged_with(self, earlier: PseudoLabels) -> PseudoLabels:
        """These judgments plus the earlier rounds' judgments of labels no longer shortlisted (same documents)."""
        if len(earlier.docs) != len(self.docs):
            raise ValueError("can only merge pseudo-labels of the same documents")
        docs = []
        for now, before in zip(self.docs, earlier.docs):
            seen = {j.label for j in now.judged}
            docs.append(DocumentPseudoLabels(now.doc, now.judged + [j for j in before.judged if j.label not in seen]))
        return PseudoLabels(docs)

    def stats(self, instruction_like_documents: int = 0, all_yes_documents: int = 0) -> PseudoLabelStats:
        pairs = sum(len(d.judged) for d in self.docs)
        yes = sum(len(d.yes) for d in self.docs)
        return PseudoLabelStats(
            documents=len(self.docs),
            pairs=pairs,
            yes=yes,
            yes_rate=yes / pairs if pairs else 0.0,
            unparseable=sum(j.verdict == "unparseable" for d in self.docs for j in d.judged),
            documents_with_yes=sum(bool(d.yes) for d in self.docs),
            instruction_like_documents=instruction_like_documents,
            all_yes_documents=all_yes_documents,
        )

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


JUDGED_FEATURES = Features(
    {
        "document_id": Value("string"),
        "document": Value("string"),
        "labels": List(Value("string")),
        "label_indices": List(Value("int64")),
        "verdicts": List(Value("string")),
        "p_yes": List(Value("float64")),
    }
)
POSITIVES = ("top-yes", "random-yes")


def candidate_positives(d: DocumentPseudoLabels, positives: str) -> list[JudgedLabel]:
    """The labels a document may be trained on: its top-scored "yes" (``top-yes``; the first on a tie), or
    every "yes" (``random-yes``, one drawn per use)."""
    if positives not in POSITIVES:
        raise ValueError(f"positives must be one of {POSITIVES}, got {positives!r}")
    yes = d.yes
    if positives == "top-yes" and yes:
        return [max(yes, key=lambda j: j.score)]
    return yes


def usable_documents(pseudo: PseudoLabels, positives: str) -> list[tuple[DocumentPseudoLabels, list[JudgedLabel]]]:
    """The documents a round trains on (those with a "yes"), each with its candidate positives."""
    usable = [(d, candidate_positives(d, positives)) for d in pseudo.docs]
    return [(d, pos) for d, pos in usable if pos]


@dataclass
class TrainingPair:
    """One training row: document ``doc``'s ``positive`` label and all its "yes" labels (``known``: never its
    negatives)."""

    doc: int
    positive: int
    known: list[int]


def select_pairs(
    pseudo: PseudoLabels, positives: str = "top-yes", epochs: int = 1, seed: int = 42
) -> list[TrainingPair]:
    """One pair per document with a "yes" and per epoch; random draws use a generator seeded with ``seed``, so a
    round is reproducible."""
    rng = random.Random(seed)
    usable = usable_documents(pseudo, positives)
    pairs = []
    for _ in range(epochs):
        for d, candidates in usable:
            positive = rng.choice(candidates)
            pairs.append(TrainingPair(d.doc, positive.label, [j.label for j in d.yes]))
    return pairs


def pairs_to_dataset(pairs: Sequence[TrainingPair], documents: Sequence[str], labels: Mapping[int, str]) -> Dataset:
    """Columns ``anchor`` (document text), ``positive`` (label text) and ``label``: the ids
    `LMTXTripletLoss` masks with (the positive's, then all the document's "yes" labels, -1 padded to a
    common width)."""
    width = max((len(p.known) for p in pairs), default=0)
    rows: dict[str, list] = {"anchor": [], "positive": [], "label": []}
    for p in pairs:
        rows["anchor"].append(documents[p.doc])
        rows["positive"].append(labels[p.positive])
        rows["label"].append([p.positive] + p.known + [-1] * (width - len(p.known)))
    return Dataset.from_dict(rows)


def label_texts(judged: Dataset) -> dict[int, str]:
    """Each label index in judged shortlists -> its text."""
    return {k: t for ks, ts in zip(judged["label_indices"], judged["labels"]) for k, t in zip(ks, ts)}


def build_lmtx_dataset(judged: Dataset, positives: str = "top-yes", epochs: int = 1, seed: int = 42) -> Dataset:
    """Judged shortlists -> the rows `LMTXTripletLoss` trains on: a row a document with a "yes" and a pass.

    Args:
        judged: `judge_shortlists`' Dataset (``document``, ``labels``, ``label_indices``, ``verdicts``, ``p_yes``).
        positives: ``"top-yes"`` (the "yes" the teacher scores highest) or ``"random-yes"`` (a "yes" drawn per
            pass, as the reference code).
        epochs: passes over the documents, each with its own draw.
        seed: the draws' seed.

    Returns:
        A Dataset with ``anchor`` (the document), ``positive`` (the label text) and ``label`` (the positive's index,
        then every "yes" label's index, -1 padded: the loss never takes them as the document's negatives).

    Example::

        from sentence_transformers import SentenceTransformerTrainer
        from st_lmtx import LMTXTripletLoss, build_lmtx_dataset

        train_dataset = build_lmtx_dataset(judged)
        trainer = SentenceTransformerTrainer(model, train_dataset=train_dataset, loss=LMTXTripletLoss(model))
    """
    pairs = select_pairs(PseudoLabels.from_dataset(judged), positives, epochs=epochs, seed=seed)
    return pairs_to_dataset(pairs, list(judged["document"]), label_texts(judged))


# The floor under p(yes) before its log: a label the teacher rules out gets a tiny share, not minus infinity.
P_YES_FLOOR = 1e-4


def build_distillation_dataset(judged: Dataset, k: int | None = None) -> Dataset:
    """Judged shortlists -> sentence-transformers' distillation rows: the teacher's scores over each shortlist.

    Args:
        judged: `judge_shortlists`' Dataset.
        k: the labels a row holds, the shortlist's first ``k`` (default: the longest shortlist); a document with
            fewer judged labels is left out.

    Returns:
        A Dataset with ``anchor`` (the document), ``label_1`` ... ``label_k`` (label texts, shortlist order) and
        ``label``: log p(yes) of each, floored at 1e-4, so that ``DistillKLDivLoss``'s softmax (temperature 1)
        gives each label its share of the teacher's p(yes).

    Example::

        from sentence_transformers.sentence_transformer.losses import DistillKLDivLoss
        from st_lmtx import build_distillation_dataset

        train_dataset = build_distillation_dataset(judged)
        # cosine scores: a student temperature sharpens them as MultipleNegativesRankingLoss's scale 20 does
        loss = DistillKLDivLoss(model, student_temperature=0.05, teacher_temperature=1.0)
    """
    rows = PseudoLabels.from_dataset(judged).docs
    k = k or max((len(d.judged) for d in rows), default=0)
    if k < 2:
        raise ValueError("distillation needs at least 2 judged labels a document")
    texts = label_texts(judged)
    documents = list(judged["document"])
    columns: dict[str, list] = {"anchor": [], **{f"label_{n + 1}": [] for n in range(k)}, "label": []}
    for d in rows:
        if len(d.judged) < k:
            continue
        columns["anchor"].append(documents[d.doc])
        for n, j in enumerate(d.judged[:k]):
            columns[f"label_{n + 1}"].append(texts[j.label])
        columns["label"].append([math.log(max(j.score, P_YES_FLOOR)) for j in d.judged[:k]])
    return Dataset.from_dict(columns)
