import math

import numpy as np
import pytest

from st_lmtx.evaluation.metrics import (
    inverse_propensities,
    ndcg_at_k,
    precision_at_k,
    psp_at_k,
    recall_at_k,
    xmc_metrics,
)

# Two documents, rankings worked out by hand below.
RANKED = np.array([[3, 1, 7, -1], [2, 5, 0, 4]])
TRUTH = [{1, 7}, {4}]


def test_precision_recall_by_hand():
    assert precision_at_k(RANKED, TRUTH, 1) == 0.0  # 3 wrong, 2 wrong
    assert precision_at_k(RANKED, TRUTH, 3) == pytest.approx((2 / 3 + 0) / 2)
    assert precision_at_k(RANKED, TRUTH, 4) == pytest.approx((2 / 4 + 1 / 4) / 2)  # -1 padding is never a hit
    assert recall_at_k(RANKED, TRUTH, 1) == 0.0
    assert recall_at_k(RANKED, TRUTH, 2) == pytest.approx((1 / 2 + 0) / 2)
    assert recall_at_k(RANKED, TRUTH, 4) == pytest.approx((2 / 2 + 1 / 1) / 2)


def test_ndcg_by_hand():
    # doc 0: hits at ranks 2 and 3 -> DCG = 1/log2(3) + 1/log2(4); IDCG@3 = 1 + 1/log2(3)
    d0 = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    # doc 1: hit at rank 4 -> 0 at k=3; at k=4 DCG = 1/log2(5), IDCG = 1
    assert ndcg_at_k(RANKED, TRUTH, 3) == pytest.approx((d0 + 0) / 2)
    assert ndcg_at_k(RANKED, TRUTH, 4) == pytest.approx((d0 + 1 / math.log2(5)) / 2)
    assert ndcg_at_k(np.array([[1, 7]]), [{1, 7}], 2) == pytest.approx(1.0)


def test_propensities_and_psp_by_hand():
    train = [[0], [0], [0], [1]]  # label 0 in 3 docs, label 1 in 1, label 2 in none
    inv = inverse_propensities(train, 3, a=0.55, b=1.5)
    c = (math.log(4) - 1) * 2.5**0.55
    expected = [1 + c * (n + 1.5) ** -0.55 for n in (3, 1, 0)]
    assert inv == pytest.approx(expected)
    assert inv[2] > inv[1] > inv[0]  # rarer labels weigh more
    ranked = np.array([[0, 2], [1, 0]])
    truth = [{2}, {0, 1}]
    # k=1: hits: doc0 none, doc1 label 1 -> inv[1]; best: doc0 inv[2], doc1 max(inv[0], inv[1]) = inv[1]
    assert psp_at_k(ranked, truth, 1, inv) == pytest.approx(inv[1] / (inv[2] + inv[1]))
    assert psp_at_k(ranked, truth, 2, inv) == pytest.approx(1.0)  # everything found by k=2


def test_xmc_metrics_keys_and_empty_truth():
    out = xmc_metrics(RANKED, TRUTH, (1, 3), inverse_propensities(TRUTH, 8))
    assert list(out) == ["P@1", "P@3", "R@1", "R@3", "nDCG@1", "nDCG@3", "PSP@1", "PSP@3"]
    inv = inverse_propensities(TRUTH, 8)
    assert out["P@3"] == precision_at_k(RANKED, TRUTH, 3) and out["R@3"] == recall_at_k(RANKED, TRUTH, 3)
    assert out["nDCG@3"] == ndcg_at_k(RANKED, TRUTH, 3) and out["PSP@3"] == psp_at_k(RANKED, TRUTH, 3, inv)
    assert out["nDCG@3"] != out["R@3"]  # the values above tell the metrics apart
    # a document with no true label counts for precision (0) but not for recall
    assert recall_at_k(np.array([[1], [2]]), [{1}, set()], 1) == 1.0
    assert precision_at_k(np.array([[1], [2]]), [{1}, set()], 1) == 0.5


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 documents"):
        precision_at_k(np.array([1, 2]), [{1}, {2}], 1)


def _rows(scores):
    from st_lmtx.teacher.base import Judgment

    return [
        [Judgment(f"l{i}", "yes" if s >= 0.5 else "no", s, False, None) for i, s in enumerate(row)] for row in scores
    ]


def test_judged_signals_by_hand():
    from st_lmtx.evaluation.llm_judged_evaluator import document_signals, judged_signals

    # doc 1: top-1 is the teacher's favourite; doc 2: "yes" but not the favourite; doc 3: "no", above the median.
    sig = judged_signals(_rows([[0.9, 0.6, 0.2], [0.7, 0.8, 0.1], [0.4, 0.3, 0.45]]))
    assert set(sig) == {"llm_P@1", "llm_top1_margin"}
    assert sig["llm_P@1"] == pytest.approx(2 / 3)
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    first = logit(0.9) - (logit(0.9) + logit(0.6) + logit(0.2)) / 3
    assert sig["llm_top1_margin"] == pytest.approx(
        (
            first
            + logit(0.7)
            - (logit(0.7) + logit(0.8) + logit(0.1)) / 3
            + logit(0.4)
            - (logit(0.4) + logit(0.3) + logit(0.45)) / 3
        )
        / 3
    )
    assert judged_signals(_rows([[0.9], [0.2]])) == {"llm_P@1": 0.5}  # top-1 only: no comparison
    # a yes/no teacher's scores of 1 and 0 are clipped before their log-odds: the margin stays finite
    hard = judged_signals(_rows([[1.0, 0.0], [0.0, 1.0]]))
    assert math.isfinite(hard["llm_top1_margin"]) and hard["llm_top1_margin"] == pytest.approx(0.0, abs=1e-9)
    assert judged_signals(_rows([[1.0, 0.0]]))["llm_top1_margin"] == pytest.approx(logit(1 - 1e-4), rel=1e-6)
    # Per document, in order (what the final-model rule pairs between rounds); no documents: P@1 0, no margin.
    per_doc = document_signals(_rows([[0.9, 0.6, 0.2], [0.7, 0.8, 0.1], [0.4, 0.3, 0.45]]))
    assert per_doc["llm_P@1"] == [1.0, 1.0, 0.0] and per_doc["llm_top1_margin"][0] == pytest.approx(first)
    assert judged_signals([]) == {"llm_P@1": 0.0} and document_signals([]) == {"llm_P@1": []}


def test_a_lenient_teacher_saturates_llm_p1_but_not_the_margin():
    """The same teacher preferences shifted up by 3 log-odds (a judge that says "yes" to nearly everything):
    llm_P@1 cannot tell a good model from a bad one any more; the margin, which compares labels, still can."""
    from st_lmtx.evaluation.llm_judged_evaluator import judged_signals

    rng = np.random.default_rng(0)
    prefs = rng.normal(size=(200, 10))  # the teacher's log-odds for each document's 10 shortlisted labels
    good = -np.sort(-prefs, axis=1)  # a model that ranks the teacher's favourite first
    bad = rng.permuted(prefs, axis=1)  # a model that ranks at random
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    strict = {name: judged_signals(_rows(sigmoid(m - 1.0))) for name, m in (("good", good), ("bad", bad))}
    lenient = {name: judged_signals(_rows(sigmoid(m + 3.0))) for name, m in (("good", good), ("bad", bad))}
    assert (
        lenient["good"]["llm_P@1"] - lenient["bad"]["llm_P@1"]
        < 0.1
        < strict["good"]["llm_P@1"] - strict["bad"]["llm_P@1"]
    )
    # a shift of every log-odds leaves top-1 minus the mean unchanged (but where the clipping bites)
    for name in ("good", "bad"):
        assert lenient[name]["llm_top1_margin"] == pytest.approx(strict[name]["llm_top1_margin"], abs=1e-6)
    assert lenient["good"]["llm_top1_margin"] > 1.0 > 0.2 > abs(lenient["bad"]["llm_top1_margin"])
