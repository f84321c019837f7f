import random
from collections import Counter

import pytest

from st_lmtx import load_documents, load_labels
from st_lmtx.pseudo_labels import (
    DocumentPseudoLabels,
    JudgedLabel,
    PseudoLabels,
    PseudoLabelStats,
    pairs_to_dataset,
    select_pairs,
    teacher_warnings,
    usable_documents,
)

LABELS = load_labels(["Wheat", "Gold", "Coffee", "Oil"])
DOCS = load_documents(["wheat and gold", "coffee", "nothing relevant"])
PSEUDO = PseudoLabels(
    [
        DocumentPseudoLabels(0, [JudgedLabel(0, "yes", 0.9), JudgedLabel(1, "yes", 0.6), JudgedLabel(3, "no", 0.2)]),
        DocumentPseudoLabels(1, [JudgedLabel(2, "yes", 0.55), JudgedLabel(3, "unparseable", 0.4)]),
        DocumentPseudoLabels(2, [JudgedLabel(3, "no", 0.1), JudgedLabel(0, "no", 0.3)]),
    ]
)


def test_random_yes_keeps_every_yes_and_drops_documents_without_one():
    pairs = select_pairs(PSEUDO, "random-yes", epochs=400, seed=0)
    assert len(pairs) == 2 * 400  # one pair per document with a "yes" and per epoch
    by_doc = Counter((p.doc, p.positive) for p in pairs)
    assert {d for d, _ in by_doc} == {0, 1}  # document 2 has no "yes": left out
    assert 150 < by_doc[(0, 0)] < 250 and 150 < by_doc[(0, 1)] < 250  # a fair draw per use
    assert by_doc[(1, 2)] == 400
    assert all(p.known == [0, 1] for p in pairs if p.doc == 0)
    # the draws are seeded: the same seed gives the same pairs, another seed other ones
    assert select_pairs(PSEUDO, "random-yes", epochs=400, seed=0) == pairs
    assert select_pairs(PSEUDO, "random-yes", epochs=400, seed=1) != pairs


def test_top_yes_is_the_highest_scored_yes_and_the_first_on_a_tie():
    pairs = select_pairs(PSEUDO, "top-yes")
    assert select_pairs(PSEUDO) == pairs  # top-yes is the default
    assert [(p.doc, p.positive, p.known) for p in pairs] == [(0, 0, [0, 1]), (1, 2, [2])]
    assert select_pairs(PSEUDO, "top-yes", epochs=3) == pairs * 3  # no draw: the same positive every pass
    # Shortlist order: Gold, Wheat, Coffee; the teacher scores Wheat highest, so Wheat is the positive.
    graded = DocumentPseudoLabels(
        0, [JudgedLabel(1, "yes", 0.6), JudgedLabel(0, "yes", 0.9), JudgedLabel(2, "no", 0.3)]
    )
    (pair,) = select_pairs(PseudoLabels([graded]), "top-yes")
    assert pair.positive == 0 and sorted(pair.known) == [0, 1]  # the other "yes" is still not a negative
    # A yes/no teacher (every "yes" scores 1.0): the first "yes" in shortlist order.
    binary = DocumentPseudoLabels(
        0, [JudgedLabel(2, "no", 0.0), JudgedLabel(1, "yes", 1.0), JudgedLabel(0, "yes", 1.0)]
    )
    assert [p.positive for p in select_pairs(PseudoLabels([binary]), "top-yes")] == [1]


def _top_yes(label: int, score: float, other: int | None = None) -> list[JudgedLabel]:
    judged = [JudgedLabel(label, "yes", score)]
    return judged + ([JudgedLabel(other, "yes", score / 2)] if other is not None else [])


def test_keep_share_trains_each_labels_most_confident_documents():
    # Label 0: four documents at 0.9 / 0.8 / 0.7 / 0.6; label 1: one, at 0.3 (less sure than any of label 0's);
    # label 2: 0.95 and two tied at 0.4; document 8 has no "yes".
    docs = [(0, 0.9), (0, 0.6), (0, 0.8), (0, 0.7), (1, 0.3), (2, 0.4), (2, 0.95), (2, 0.4)]
    pseudo = PseudoLabels(
        [DocumentPseudoLabels(i, _top_yes(label, score, other=3)) for i, (label, score) in enumerate(docs)]
        + [DocumentPseudoLabels(8, [JudgedLabel(0, "no", 0.45)])]
    )

    def kept(share, positives="top-yes"):
        return [d.doc for d, _ in usable_documents(pseudo, positives, share)]

    assert kept(1.0) == list(range(8))  # every document with a "yes": the default of select_pairs
    # Half of each label, cut within the label: label 1's only document stays although it scores under every
    # dropped one; label 2's two documents tied at its cut both stay.
    assert kept(0.5) == [0, 2, 4, 5, 6, 7]
    assert kept(0.25) == [0, 4, 6]  # ceil(0.25 * 4) = 1 of label 0, at least one a label
    assert kept(0.0) == [0, 4, 6]  # one a label
    assert kept(0.5, "random-yes") == kept(0.5)  # ranked by the top-scored "yes" whatever the draw
    pairs = select_pairs(pseudo, "top-yes", keep_share=0.5)
    assert [(p.doc, p.positive, p.known) for p in pairs][:2] == [(0, 0, [0, 3]), (2, 0, [0, 3])]
    # A yes/no teacher: every "yes" scores 1.0, so nothing tells its documents apart and all train.
    binary = PseudoLabels([DocumentPseudoLabels(i, _top_yes(label, 1.0)) for i, (label, _) in enumerate(docs)])
    assert len(usable_documents(binary, "top-yes", 0.5)) == 8


def test_keep_share_raises_the_precision_of_a_judge_surer_when_right():
    # A simulated lenient judge: it says "yes" to a document's true label when shortlisted, p(yes) around 0.8, and
    # to a wrong label in 40% of documents, p(yes) around 0.65: its top "yes" is right for about 82% of the
    # documents with one (the 1.5B's on Reuters: 79%).
    rng = random.Random(0)
    truth, docs = [], []
    for i in range(2000):
        label = rng.randrange(20)
        judged = []
        if rng.random() < 0.75:
            judged.append(JudgedLabel(label, "yes", min(1.0, rng.gauss(0.8, 0.1))))
        if rng.random() < 0.4:
            judged.append(JudgedLabel((label + 1 + rng.randrange(19)) % 20, "yes", min(1.0, rng.gauss(0.65, 0.1))))
        truth.append(label)
        docs.append(DocumentPseudoLabels(i, judged))
    pseudo = PseudoLabels(docs)

    def precision(share):
        pairs = select_pairs(pseudo, "top-yes", keep_share=share)
        return len(pairs), sum(p.positive == truth[p.doc] for p in pairs) / len(pairs)

    (n_all, p_all), (n_half, p_half) = precision(1.0), precision(0.5)
    assert 1650 < n_all < 1750 and 0.78 < p_all < 0.86
    assert abs(n_half - n_all / 2) < 30 and p_half > 0.90


def test_dataset_columns_and_label_ids():
    ds = pairs_to_dataset(select_pairs(PSEUDO, "top-yes"), DOCS, LABELS)
    assert ds.column_names == ["anchor", "positive", "label"]
    assert ds["anchor"] == ["wheat and gold", "coffee"] and ds["positive"] == ["Wheat", "Coffee"]
    assert ds["label"] == [[0, 0, 1], [2, 2, -1]]  # positive id, then the "yes" ids padded with -1


def test_stats_and_round_trip(tmp_path):
    stats = PSEUDO.stats()
    assert stats == PseudoLabelStats(
        documents=3,
        pairs=7,
        yes=3,
        yes_rate=3 / 7,
        unparseable=1,
        documents_with_yes=2,
        instruction_like_documents=0,
        all_yes_documents=0,
    )
    assert PSEUDO.stats(instruction_like_documents=2, all_yes_documents=1).all_yes_documents == 1
    PSEUDO.save(tmp_path / "p.jsonl", DOCS.ids, LABELS)
    assert PseudoLabels.load(tmp_path / "p.jsonl") == PSEUDO
    with pytest.raises(ValueError, match="positives must be"):
        select_pairs(PSEUDO, "best")


def test_merging_keeps_labels_judged_in_earlier_rounds():
    later = PseudoLabels(
        [
            DocumentPseudoLabels(0, [JudgedLabel(2, "no", 0.2), JudgedLabel(0, "yes", 0.9)]),
            DocumentPseudoLabels(1, [JudgedLabel(3, "no", 0.1)]),
            DocumentPseudoLabels(2, [JudgedLabel(3, "no", 0.1)]),
        ]
    )
    merged = later.merged_with(PSEUDO)
    assert [j.label for j in merged.docs[0].judged] == [2, 0, 1, 3]  # current first, then what dropped out
    assert [j.label for j in merged.docs[1].yes] == [2]  # a "yes" from an earlier shortlist still counts
    with pytest.raises(ValueError, match="same documents"):
        later.merged_with(PseudoLabels(PSEUDO.docs[:1]))


def _stats(docs: int, with_yes: int, pairs: int, yes: int, unparseable: int = 0) -> PseudoLabelStats:
    return PseudoLabelStats(
        documents=docs,
        pairs=pairs,
        yes=yes,
        yes_rate=yes / pairs,
        unparseable=unparseable,
        documents_with_yes=with_yes,
    )


def test_teacher_warnings_name_a_strict_a_lenient_and_a_garbled_judge():
    # The 0.5B teacher's round 1 on Reuters: 120 "yes" of 10,000 pairs, for 106 of 1,000 documents.
    (strict,) = teacher_warnings(_stats(1000, 106, 10000, 120))
    assert "only 106 of 1000 documents (11%)" in strict
    (lenient,) = teacher_warnings(_stats(1000, 1000, 10000, 6800))
    assert "68% of the shortlisted pairs" in lenient and "--teacher URL --teacher-model NAME" in lenient
    assert "stronger teacher buys" in lenient  # where docs/teachers.md says what a better judge gave
    (garbled,) = teacher_warnings(_stats(1000, 900, 10000, 2800, unparseable=300))
    assert "300 of 10000 answers (3.0%)" in garbled
    # A round like the 1.5B teacher's on Reuters (28% "yes" with the paper's prompt; 41 answers of a round
    # unparseable): nothing to say.
    assert teacher_warnings(_stats(1000, 899, 10000, 2800, unparseable=41)) == []
    assert len(teacher_warnings(_stats(1000, 100, 10000, 5000, unparseable=500))) == 3
    # Empty round: no division by zero, no warning that would mislead.
    assert (
        teacher_warnings(
            PseudoLabelStats(documents=0, pairs=0, yes=0, yes_rate=0.0, unparseable=0, documents_with_yes=0)
        )
        == []
    )
