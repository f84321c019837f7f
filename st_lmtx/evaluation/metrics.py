"""Extreme multi-label ranking metrics: P@k, R@k, nDCG@k and propensity-scored PSP@k.

All functions take ``ranked`` (an ``(n_docs, K)`` integer array of label indices, best first; -1 pads rows
with fewer than K predictions) and ``truth`` (one collection of true label indices per document). They return
fractions in [0, 1]; tables multiply by 100 as XMC papers do.

- ``P@k = |top_k ∩ Y| / k``, averaged over all documents.
- ``R@k = |top_k ∩ Y| / |Y|``, averaged over documents with at least one true label.
- ``nDCG@k = DCG@k / IDCG@k`` with ``DCG@k = sum_{r<=k, l_r in Y} 1/log2(r+1)`` and IDCG over
  ``min(k, |Y|)`` hits, averaged over documents with at least one true label.
- ``PSP@k`` (Jain, Prabhu and Varma, KDD 2016): hits weighted by inverse propensity ``1/p_l``,
  ``p_l = 1 / (1 + C exp(-A log(N_l + B)))``, ``C = (log N - 1)(B + 1)^A``, where ``N_l`` is the number of
  training documents with label ``l`` and ``N`` the number of training documents; reported, as in xclib, as
  the ratio of the summed weighted hits to the best achievable summed weighted hits.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np


def _hits(ranked: np.ndarray, truth: Sequence[Collection[int]], k: int) -> np.ndarray:
    """``hits[i, r]`` is True when the rank-r label of document i (r < k) is relevant."""
    ranked = np.asarray(ranked)
    if ranked.ndim != 2 or len(ranked) != len(truth):
        raise ValueError(f"ranked must be (n_docs, K) for {len(truth)} documents, got shape {ranked.shape}")
    top = ranked[:, :k]
    hits = np.zeros(top.shape, dtype=bool)
    for i, (row, true) in enumerate(zip(top, truth)):
        true = set(true)
        hits[i] = [label >= 0 and int(label) in true for label in row]
    return hits


def precision_at_k(ranked: np.ndarray, truth: Sequence[Collection[int]], k: int) -> float:
    return float(_hits(ranked, truth, k).sum(axis=1).mean() / k)


def recall_at_k(ranked: np.ndarray, truth: Sequence[Collection[int]], k: int) -> float:
    sizes = np.array([len(set(t)) for t in truth], dtype=float)
    keep = sizes > 0
    if not keep.any():
        return 0.0
    hits = _hits(ranked, truth, k).sum(axis=1)
    return float((hits[keep] / sizes[keep]).mean())


def ndcg_at_k(ranked: np.ndarray, truth: Sequence[Collection[int]], k: int) -> float:
    sizes = np.array([len(set(t)) for t in truth])
    keep = sizes > 0
    if not keep.any():
        return 0.0
    hits = _hits(ranked, truth, k)
    discounts = 1.0 / np.log2(np.arange(2, hits.shape[1] + 2))
    dcg = (hits * discounts).sum(axis=1)
    ideal_cumulative = np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, k + 2)))])
    idcg = ideal_cumulative[np.minimum(sizes, k)]
    return float((dcg[keep] / idcg[keep]).mean())


def inverse_propensities(
    train_truth: Sequence[Collection[int]], num_labels: int, a: float = 0.55, b: float = 1.5
) -> np.ndarray:
    """``1 / p_l`` for every label from training ground truth (Jain et al. 2016; A=0.55, B=1.5 by default,
    the values for most XMC datasets)."""
    n = len(train_truth)
    if n < 1:
        raise ValueError("propensities need at least one training document")
    counts = np.zeros(num_labels, dtype=float)
    for true in train_truth:
        for label in set(true):
            counts[label] += 1
    c = (np.log(n) - 1.0) * (b + 1.0) ** a
    return 1.0 + c * np.exp(-a * np.log(counts + b))


def psp_at_k(ranked: np.ndarray, truth: Sequence[Collection[int]], k: int, inv_propensities: np.ndarray) -> float:
    hits = _hits(ranked, truth, k)
    top = np.asarray(ranked)[:, :k]
    weighted = np.where(hits, inv_propensities[np.clip(top, 0, None)], 0.0).sum()
    best = sum(np.sort(inv_propensities[list(set(t))])[::-1][:k].sum() for t in truth if len(t))
    return float(weighted / best) if best > 0 else 0.0


def xmc_metrics(
    ranked: np.ndarray,
    truth: Sequence[Collection[int]],
    k_values: Sequence[int] = (1, 3, 5, 10),
    inv_propensities: np.ndarray | None = None,
) -> dict[str, float]:
    """Every metric at every k, keyed ``P@k``, ``R@k``, ``nDCG@k`` and (with propensities) ``PSP@k``."""
    out: dict[str, float] = {}
    for k in k_values:
        out[f"P@{k}"] = precision_at_k(ranked, truth, k)
    for k in k_values:
        out[f"R@{k}"] = recall_at_k(ranked, truth, k)
    for k in k_values:
        out[f"nDCG@{k}"] = ndcg_at_k(ranked, truth, k)
    if inv_propensities is not None:
        for k in k_values:
            out[f"PSP@{k}"] = psp_at_k(ranked, truth, k, inv_propensities)
    return out
