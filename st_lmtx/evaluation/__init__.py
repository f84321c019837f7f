"""Evaluation: ground-truth metrics (`XMCEvaluator`) and the teacher's view of a model
(`LLMJudgedEvaluator`), as sentence-transformers evaluators."""

from st_lmtx.evaluation.llm_judged_evaluator import LLMJudgedEvaluator, document_signals, judged_signals
from st_lmtx.evaluation.metrics import (
    inverse_propensities,
    ndcg_at_k,
    precision_at_k,
    psp_at_k,
    recall_at_k,
    xmc_metrics,
)
from st_lmtx.evaluation.xmc_evaluator import XMCEvaluator

__all__ = [
    "LLMJudgedEvaluator",
    "XMCEvaluator",
    "document_signals",
    "inverse_propensities",
    "judged_signals",
    "ndcg_at_k",
    "precision_at_k",
    "psp_at_k",
    "recall_at_k",
    "xmc_metrics",
]
