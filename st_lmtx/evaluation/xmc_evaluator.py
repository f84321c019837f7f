from __future__ import annotations

import csv
import logging
import os
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sentence_transformers.base.evaluation.evaluator import BaseEvaluator

from st_lmtx.evaluation.metrics import inverse_propensities, xmc_metrics
from st_lmtx.shortlist import IndexConfig, ShortlistMiner

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from st_lmtx.inputs import DocumentSet, LabelSet

logger = logging.getLogger(__name__)


class XMCEvaluator(BaseEvaluator):
    def __init__(
        self,
        labels: LabelSet,
        documents: DocumentSet,
        k_values: Sequence[int] = (1, 3, 5, 10),
        train_truth: Sequence[Collection[int]] | None = None,
        propensity_a: float = 0.55,
        propensity_b: float = 1.5,
        name: str = "",
        batch_size: int = 64,
        show_progress_bar: bool = False,
        write_csv: bool = True,
        index_config: IndexConfig | None = None,
    ) -> None:
        """
        Evaluates a bi-encoder as an extreme multi-label tagger: labels and documents are embedded, every
        document's labels are ranked by cosine similarity through the same FAISS index the tagger uses, and
        the ranking is scored against ground truth with P@k, R@k, nDCG@k and PSP@k (see
        `st_lmtx.evaluation.metrics` for the formulas). Scores are fractions in [0, 1].

        Propensities for PSP@k come from ``train_truth`` (the training split's ground truth) when given, as
        XMC papers compute them, else from the evaluated documents' own ground truth.

        Args:
            labels: the label set
            documents: documents with ground truth (``documents.targets``)
            k_values: the cut-offs
            train_truth: training ground truth, only for propensities
            propensity_a: A of Jain et al. (2016)
            propensity_b: B of Jain et al. (2016)
            name: prefix of the metric names
            batch_size: encoding batch size
            show_progress_bar: show progress bars while encoding
            write_csv: append the metrics to ``xmc_evaluation_{name}_results.csv`` in the output path
            index_config: the label index's configuration

        Example:
            ::

                from sentence_transformers import SentenceTransformer
                from st_lmtx import XMCEvaluator, load_lfxmc

                labels, test_docs = load_lfxmc("data/reuters21578", split="tst")
                evaluator = XMCEvaluator(labels, test_docs, name="reuters-test")
                results = evaluator(SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2"))
                print(results[evaluator.primary_metric])  # reuters-test_P@1
        """
        super().__init__()
        if documents.targets is None:
            raise ValueError("XMCEvaluator needs documents with ground truth (target_ind)")
        documents.check_targets(len(labels))
        self.labels = labels
        self.documents = documents
        self.k_values = sorted(set(int(k) for k in k_values))
        self.name = name
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        self.write_csv = write_csv
        self.index_config = index_config
        self.propensity_a = propensity_a
        self.propensity_b = propensity_b
        self.propensities_from = "train" if train_truth is not None else "evaluated documents"
        self.inv_propensities = inverse_propensities(
            train_truth if train_truth is not None else documents.targets, len(labels), propensity_a, propensity_b
        )
        self.primary_metric = "P@1"
        self.csv_file = f"xmc_evaluation{('_' + name) if name else ''}_results.csv"

    def rank(self, model: SentenceTransformer) -> np.ndarray:
        """The top ``max(k_values)`` label indices of every document."""
        miner = ShortlistMiner(
            model, self.labels, self.index_config, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar
        )
        return miner.mine(self.documents.texts, k=max(self.k_values)).indices

    def __call__(
        self, model: SentenceTransformer, output_path: str | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        ranked = self.rank(model)
        metrics = xmc_metrics(ranked, self.documents.targets, self.k_values, self.inv_propensities)
        logger.info(
            "XMC evaluation%s: %s",
            f" ({self.name})" if self.name else "",
            ", ".join(f"{key} {100 * value:.2f}" for key, value in metrics.items()),
        )
        if output_path is not None and self.write_csv:
            os.makedirs(output_path, exist_ok=True)
            path = os.path.join(output_path, self.csv_file)
            new = not os.path.isfile(path)
            with open(path, "a", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                if new:
                    writer.writerow(["epoch", "steps", *metrics.keys()])
                writer.writerow([epoch, steps, *metrics.values()])
        metrics = self.prefix_name_to_metrics(metrics, self.name)
        self.store_metrics_in_model_card_data(model, metrics, epoch, steps)
        return metrics

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "k_values": self.k_values,
            "propensity_a": self.propensity_a,
            "propensity_b": self.propensity_b,
            "propensities_from": self.propensities_from,
        }
