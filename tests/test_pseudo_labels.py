from collections import Counter

import pytest

from st_lmtx import load_documents, load_labels
from st_lmtx.pseudo_labels import (
    DocumentPseudoLabels,
    JudgedLabel,
    PseudoLabels,
    PseudoLabelStats,
    build_lmtx_dataset,
    select_pairs,
    teacher_warnings,
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


def test_dataset_columns_and_label_ids():
    ds = build_lmtx_dataset(PSEUDO.to_dataset(DOCS, LABELS), "top-yes")
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
