from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from st_lmtx.shortlist import IndexConfig, ShortlistMiner

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from st_lmtx.inputs import DocumentSet, LabelSet
    from st_lmtx.teacher.base import Judgment, Teacher, TeacherUsage

logger = logging.getLogger(__name__)

# The stop metrics judged_signals computes (LMTXArguments.stop_metric's choices); each is "higher is better".
SIGNALS: tuple[str, ...] = ("llm_top1_margin", "llm_P@1")
# p(yes) is clipped this far from 0 and 1 before its log-odds are taken: a yes/no teacher's 1.0 and 0.0 stay finite.
EPSILON = 1e-4


def logit(p: float) -> float:
    """The log-odds of ``p``, clipped to [EPSILON, 1 - EPSILON]."""
    p = min(max(p, EPSILON), 1.0 - EPSILON)
    return math.log(p / (1.0 - p))


def document_signals(rows: Sequence[Sequence[Judgment | None]]) -> dict[str, list[float]]:
    """Each signal of `judged_signals` per document, in the documents' order (their mean is the signal): what
    tells two models apart on the same documents, beyond their means. A document whose top-k a budget left
    partly unjudged (``None``) is left out."""
    rows = [row for row in rows if row and all(j is not None for j in row)]
    signals = {"llm_P@1": [float(row[0].verdict == "yes") for row in rows]}
    if all(len(row) > 1 for row in rows) and rows:
        signals["llm_top1_margin"] = [
            logit(row[0].score) - statistics.fmean(logit(j.score) for j in row) for row in rows
        ]
    return signals


def judged_signals(rows: Sequence[Sequence[Judgment]]) -> dict[str, float]:
    """What the teacher's judgments of each document's top-k (best first, under the model) say about the model.

    - ``llm_P@1``: the share of documents whose top-1 the teacher calls relevant (the reference's stop rule).
      A lenient teacher says "yes" to most shortlisted labels, so it saturates near 1 whatever the model.
    - ``llm_top1_margin``: the mean, over documents, of the top-1's log-odds of "yes" minus the mean log-odds of
      their top-k: how much the teacher prefers the model's first label to its others, which no "yes"
      threshold blinds however lenient the teacher. Needs ``k > 1`` for every document (else it is left out).
    """
    return signal_means(document_signals(rows))


def signal_means(documents: dict[str, list[float]]) -> dict[str, float]:
    """The signals from their per-document values (no documents: ``llm_P@1`` 0, no margin)."""
    means = {name: statistics.fmean(values) for name, values in documents.items() if values}
    return {"llm_P@1": 0.0} | means


class LLMJudgedEvaluator(BaseEvaluator):
    def __init__(
        self,
        labels: LabelSet,
        documents: DocumentSet,
        teacher: Teacher,
        name: str = "",
        batch_size: int = 64,
        show_progress_bar: bool = False,
        index_config: IndexConfig | None = None,
        k: int = 1,
    ) -> None:
        """
        P@1 as the teacher judges it, for data with no ground truth: every document's top-1 label under the
        model is sent to the teacher, and

        ``llm_P@1 = |{d : teacher(d, top1(d)) = "yes"}| / |D|`` and, with ``k > 1``, ``llm_top1_margin``, which
        compares the top-1 with the rest of the top-k (`judged_signals`).

        LMTX's stop rule compares ``llm_P@1`` between curriculum rounds on a fixed sample of training documents
        (800 in the reference). The teacher's cache makes repeated top-1 labels free.

        With ``k > 1`` the teacher judges each document's whole top-k, which costs little more than the top-1
        with a teacher that reuses the document's prefix; on training documents it is what the next LMTX round
        asks about them anyway (the trainer passes its shortlist size: the next round finds them in the cache).
        ``last_usage`` holds the teacher's usage of the last call, ``last_documents`` each signal per document.

        Args:
            labels: the label set
            documents: the documents to judge (ground truth, if any, is not used)
            teacher: the judge
            name: prefix of the metric names
            batch_size: encoding batch size
            show_progress_bar: show progress bars while encoding
            index_config: the label index's configuration
            k: labels judged per document (the top-1 is the one measured)

        Example:
            ::

                evaluator = LLMJudgedEvaluator(labels, dev_docs, teacher)
                evaluator(model)  # {'llm_P@1': 0.71}
        """
        super().__init__()
        self.labels = labels
        self.documents = documents
        self.teacher = teacher
        self.name = name
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.index_config = index_config
        self.k = k
        self.primary_metric = "llm_P@1"
        self.last_usage: TeacherUsage | None = None
        self.last_documents: dict[str, list[float]] = {}
        self.last_measured: list[int] = []

    def __call__(
        self,
        model: SentenceTransformer,
        output_path: str | None = None,
        epoch: int = -1,
        steps: int = -1,
        stop_at: float | None = None,
    ) -> dict[str, float]:
        """The teacher's signals on ``model``'s top-k of the documents. ``stop_at``: the budget's spending at which
        the teacher stops judging (default: the budget's whole amount); the documents reached are measured."""
        miner = ShortlistMiner(
            model, self.labels, self.index_config, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar
        )
        top = miner.mine(self.documents.texts, k=min(self.k, len(self.labels)))
        candidates = [[self.labels.texts[j] for j in top.for_doc(i)] for i in range(len(top))]
        # Under a budget the dev judging stops where the budget ends, rather than fail: the documents it reached
        # still measure the model.
        budget = self.teacher.budget
        result = self.teacher.judge(
            self.documents.texts,
            candidates,
            desc=f"Teacher (dev top-{self.k})",
            stop_at=stop_at if stop_at is not None else budget.amount if budget is not None else None,
        )
        if result.stopped:
            complete = sum(all(j is not None for j in row) for row in result.judgments)
            logger.info(
                "The teacher budget stopped the dev judging: %d of %d documents measured", complete, len(candidates)
            )
        self.last_usage = result.usage
        self.last_measured = [i for i, row in enumerate(result.judgments) if all(j is not None for j in row)]
        self.last_documents = document_signals(result.judgments)
        metrics = signal_means(self.last_documents)
        logger.info("LLM-judged P@1 on %d documents: %.4f", len(self.last_measured), metrics["llm_P@1"])
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def keep_measured(self) -> list[int]:
        """Keep only the documents the last call measured (a budget stopped it before the rest); their indices
        into the documents as they were."""
        kept = self.last_measured
        if len(kept) < len(self.documents):
            self.documents = self.documents.subset(kept)
            self.last_measured = list(range(len(kept)))
        return kept

    def get_config_dict(self) -> dict[str, Any]:
        return {"documents": len(self.documents), "teacher": self.teacher.model_name, "k": self.k}
