from collections import Counter

import pytest

from st_lmtx import load_documents, load_labels
from st_lmtx.pseudo_labels import (
    DocumentPseudoLabels,
    JudgedLabel,
    PseudoLabels,
    SelectionConfig,
    build_pseudo_label_dataset,
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
    pairs = select_pairs(PSEUDO, len(LABELS), SelectionConfig(epochs=400, seed=0))
    by_doc = Counter((p.doc, p.positive) for p in pairs)
    assert {d for d, _ in by_doc} == {0, 1}  # document 2 has no "yes": left out
    assert 150 < by_doc[(0, 0)] < 250 and 150 < by_doc[(0, 1)] < 250  # a fair draw per use
    assert all(p.known == [0, 1] for p in pairs if p.doc == 0)


def test_top_yes_and_threshold():
    pairs = select_pairs(PSEUDO, len(LABELS), SelectionConfig(positives="top-yes"))
    assert [(p.doc, p.positive) for p in pairs] == [(0, 0), (1, 2)]
    pairs = select_pairs(PSEUDO, len(LABELS), SelectionConfig(positives="top-yes", threshold=0.6))
    assert [(p.doc, p.positive) for p in pairs] == [(0, 0)]


def test_student_yes_trusts_the_teacher_first_then_the_trained_shortlist_order():
    # Shortlist order: Gold, Wheat, Coffee; the teacher scores Wheat highest.
    doc = DocumentPseudoLabels(0, [JudgedLabel(1, "yes", 0.6), JudgedLabel(0, "yes", 0.9), JudgedLabel(2, "no", 0.3)])
    pseudo = PseudoLabels([doc])
    untrained = select_pairs(pseudo, len(LABELS), SelectionConfig(positives="student-yes"))
    trained = select_pairs(pseudo, len(LABELS), SelectionConfig(positives="student-yes", trained_shortlist=True))
    top = select_pairs(pseudo, len(LABELS), SelectionConfig(positives="top-yes", trained_shortlist=True))
    assert [p.positive for p in untrained] == [0] and [p.positive for p in top] == [0]
    assert [p.positive for p in trained] == [1]  # the first "yes" in shortlist order
    assert sorted(trained[0].known) == [0, 1]  # the other "yes" is still not a negative
    # The threshold applies first: a weak first "yes" gives way to the next one.
    strict = SelectionConfig(positives="student-yes", trained_shortlist=True, threshold=0.7)
    assert [p.positive for p in select_pairs(pseudo, len(LABELS), strict)] == [0]


def test_score_weighted_prefers_higher_scores():
    pairs = select_pairs(PSEUDO, len(LABELS), SelectionConfig(positives="score-weighted", epochs=600, seed=1))
    counts = Counter(p.positive for p in pairs if p.doc == 0)
    assert counts[0] / counts[1] == pytest.approx(0.9 / 0.6, rel=0.2)


def test_dataset_columns_and_label_ids():
    ds = build_pseudo_label_dataset(PSEUDO, DOCS, LABELS, SelectionConfig(positives="top-yes"))
    assert ds.column_names == ["anchor", "positive", "label"]
    assert ds["anchor"] == ["wheat and gold", "coffee"] and ds["positive"] == ["Wheat", "Coffee"]
    assert ds["label"] == [[0, 0, 1], [2, 2, -1]]  # positive id, then the "yes" ids padded with -1
    hard = build_pseudo_label_dataset(PSEUDO, DOCS, LABELS, SelectionConfig(positives="top-yes", hard_negatives=True))
    assert hard.column_names == ["anchor", "positive", "negative", "label"]
    assert hard["negative"][0] == "Oil"  # the teacher's "no"
    assert hard["label"][0][:2] == [0, 3]
    assert hard["negative"][1] != "Coffee"  # no "no" in the shortlist: any label that is not a "yes"


def test_stats_and_round_trip(tmp_path):
    stats = PSEUDO.stats()
    assert stats == {"documents": 3, "pairs": 7, "yes": 3, "yes_rate": 3 / 7, "unparseable": 1, "documents_with_yes": 2}
    PSEUDO.save(tmp_path / "p.jsonl", DOCS.ids, LABELS)
    assert PseudoLabels.load(tmp_path / "p.jsonl") == PSEUDO
    with pytest.raises(ValueError, match="positives must be"):
        SelectionConfig(positives="best")


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


def _lenient_matrix() -> PseudoLabels:
    """Label 0 ("Wheat") gets p(yes) 0.95 from every document: the teacher's bias, not evidence. Labels 1-3 get
    a high score from the one document that is about them and a low one elsewhere."""
    rows = [[0.95, 0.90, 0.10, 0.10], [0.95, 0.10, 0.90, 0.10], [0.95, 0.10, 0.10, 0.90], [0.95, 0.10, 0.10, 0.10]]
    return PseudoLabels([DocumentPseudoLabels(i, [JudgedLabel(l, "yes" if p >= 0.5 else "no", p) for l, p in enumerate(row)])
                         for i, row in enumerate(rows)])  # fmt: skip


def test_label_prior_discounts_a_label_every_document_gets_yes_for():
    from st_lmtx.calibration import calibrate, label_priors, logit

    pseudo = _lenient_matrix()
    raw = select_pairs(pseudo, 4, SelectionConfig(positives="top-yes"))
    assert [p.positive for p in raw] == [0, 0, 0, 0]  # raw p(yes): the biased label wins everywhere
    calibrated = calibrate(pseudo, "label-prior", shrinkage=0.0)
    assert label_priors(pseudo, 0.0)[0] == pytest.approx(logit(0.95))
    assert [p.positive for p in select_pairs(calibrated, 4, SelectionConfig(positives="top-yes"))] == [1, 2, 3, 0]
    # By hand, document 0: label 1 is 0.9 against a prior of mean(logit(.9), 3 x logit(.1)); label 0 scores 0.
    prior_1 = (logit(0.9) + 3 * logit(0.1)) / 4
    assert calibrated.docs[0].judged[1].calibrated == pytest.approx(logit(0.9) - prior_1)
    assert calibrated.docs[0].judged[0].calibrated == pytest.approx(0.0, abs=1e-9)
    assert calibrated.docs[0].judged[1].verdict == "yes" and calibrated.docs[0].judged[1].score == 0.9  # unchanged
    # Shrinkage pulls a label's prior towards the overall mean.
    overall = sum(logit(j.score) for d in pseudo.docs for j in d.judged) / 16
    assert label_priors(pseudo, 16.0)[0] == pytest.approx((4 * logit(0.95) + 16 * overall) / 20)


def test_contextual_calibration_subtracts_the_content_free_score():
    from st_lmtx.calibration import calibrate, logit

    pseudo = _lenient_matrix()
    content_free = {0: logit(0.95), 1: logit(0.5), 2: logit(0.5), 3: logit(0.5)}
    calibrated = calibrate(pseudo, "contextual", content_free)
    assert [p.positive for p in select_pairs(calibrated, 4, SelectionConfig(positives="top-yes"))] == [1, 2, 3, 0]
    assert calibrated.docs[2].judged[3].calibrated == pytest.approx(logit(0.9))
    with pytest.raises(ValueError, match="no content-free score for 1 judged label"):
        calibrate(pseudo, "contextual", {0: 0.0, 1: 0.0, 2: 0.0})
    with pytest.raises(ValueError, match="calibration must be one of"):
        calibrate(pseudo, "platt")


def test_keep_documents_leaves_out_the_weakest_positives():
    from st_lmtx.pseudo_labels import usable_documents

    # Label 0's documents score 0.99 / 0.6 / 0.8 / 0.7; label 1's (a label the teacher is less sure of) 0.55 / 0.52.
    scores = [(0, 0.99), (0, 0.6), (0, 0.8), (0, 0.7), (1, 0.55), (1, 0.52)]
    pseudo = PseudoLabels([DocumentPseudoLabels(i, [JudgedLabel(l, "yes", p)]) for i, (l, p) in enumerate(scores)])
    kept = usable_documents(pseudo, SelectionConfig(positives="top-yes", keep_documents=0.5))
    # The cut is per label: label 1 keeps its best document although 0.55 is below every label-0 score.
    assert sorted(d.doc for d, _ in kept) == [0, 2, 4]
    # Ties at the cut are kept: a teacher with no graded scores (all 1.0) keeps every document.
    binary = PseudoLabels([DocumentPseudoLabels(i, [JudgedLabel(0, "yes", 1.0)]) for i in range(5)])
    assert len(usable_documents(binary, SelectionConfig(keep_documents=0.4))) == 5
    with pytest.raises(ValueError, match="keep_documents"):
        SelectionConfig(keep_documents=0.0)


def _stats(docs: int, with_yes: int, pairs: int, yes: int, unparseable: int = 0) -> dict:
    return {"documents": docs, "pairs": pairs, "yes": yes, "yes_rate": yes / pairs, "unparseable": unparseable,
            "documents_with_yes": with_yes}


def test_teacher_warnings_name_a_strict_a_lenient_and_a_garbled_judge():
    # The 0.5B teacher's round 1 on Reuters: 120 "yes" of 10,000 pairs, for 106 of 1,000 documents.
    (strict,) = teacher_warnings(_stats(1000, 106, 10000, 120))
    assert "only 106 of 1000 documents (11%)" in strict
    (lenient,) = teacher_warnings(_stats(1000, 1000, 10000, 6800))
    assert "68% of the shortlisted pairs" in lenient
    (garbled,) = teacher_warnings(_stats(1000, 900, 10000, 2800, unparseable=300))
    assert "300 of 10000 answers (3.0%)" in garbled
    # A round like the 1.5B teacher's on Reuters (28% "yes" with the paper's prompt; at most 41 answers of a
    # round unparseable, in the prefilled layout): nothing to say.
    assert teacher_warnings(_stats(1000, 899, 10000, 2800, unparseable=41)) == []
    assert len(teacher_warnings(_stats(1000, 100, 10000, 5000, unparseable=500))) == 3
    # Empty round: no division by zero, no warning that would mislead.
    assert teacher_warnings({"documents": 0, "pairs": 0, "yes": 0, "yes_rate": 0.0, "unparseable": 0,
                             "documents_with_yes": 0}) == []
