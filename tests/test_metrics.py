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
    # a document with no true label counts for precision (0) but not for recall
    assert recall_at_k(np.array([[1], [2]]), [{1}, set()], 1) == 1.0
    assert precision_at_k(np.array([[1], [2]]), [{1}, set()], 1) == 0.5


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 documents"):
        precision_at_k(np.array([1, 2]), [{1}, {2}], 1)
