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
