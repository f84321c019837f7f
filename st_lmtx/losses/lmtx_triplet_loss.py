from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.losses.merged_forward import embed_columns
from sentence_transformers.util import cos_sim
from torch import Tensor, nn


class LMTXTripletLoss(nn.Module):
    def __init__(
        self,
        model: SentenceTransformer,
        margin: float = 0.3,
        num_negatives: int = 10,
        softmax_weighting: bool = False,
        temperature: float = 0.1,
        deduplicate_labels: bool = True,
    ) -> None:
        """
        The triplet loss of LMTX (Zhang, Ullah and Babbar, COLING 2025) with online hard negatives mined from
        the batch. Every (document, positive label) pair of the batch contributes the hinge

        ``loss_i = sum_{n in N_i} w_in * max(0, cos(x_i, l_n) - cos(x_i, l_{p_i}) + margin)``

        where ``x_i`` is the document, ``l_{p_i}`` its positive label, and ``N_i`` the ``num_negatives``
        labels of the batch (the other rows' positives, and any negative columns) most similar to ``x_i``
        that are *valid* negatives for it. The loss is the mean of ``loss_i`` over the batch. By default
        ``w_in = 1 / num_negatives`` (the reference code's mean); with ``softmax_weighting`` the violating
        negatives are weighted by ``softmax(cos(x_i, l_n) / temperature)`` over the violators, which
        concentrates the gradient on the hardest ones (the reference scripts' "aggressive" option).

        A label-id column makes in-batch negatives safe for multi-label data: an in-batch label that is the
        document's own positive or another of its known positives (for LMTX, another label the teacher said
        "yes" to) is never used as its negative, and with ``deduplicate_labels`` a label that appears in
        several rows is one candidate, not several copies of the same hinge. Without a label column every
        other row's label is a negative (the plain in-batch triplet loss).

        Args:
            model: SentenceTransformer model
            margin: the positive must beat every negative by this much in cosine similarity. Reference: 0.3.
            num_negatives: how many of the hardest valid in-batch negatives each pair uses. Reference: 10.
            softmax_weighting: weight violating negatives by a softmax of their similarities instead of
                uniformly.
            temperature: the softmax temperature of ``softmax_weighting``. Reference: 0.1.
            deduplicate_labels: count a label that is in several rows of the batch once (needs label ids).

        References:
            - Large Language Model as a Teacher for Zero-shot Tagging at Extreme Scales (COLING 2025):
              https://arxiv.org/abs/2406.09288
            - Reference code: https://github.com/xmc-aalto/LMTX

        Requirements:
            1. (document, positive label) pairs, optionally with label columns that are hard negatives
            2. Optionally label ids, to mask false negatives: the column ``label`` holds, for each row, the ids
               of its text columns after the first (positive, then any negatives), followed by the ids of the
               document's other known positives, padded with -1 to a common length.

        Inputs:
            +-------------------------------------------------+--------------------------------------------+
            | Texts                                           | Labels                                     |
            +=================================================+============================================+
            | (anchor, positive) pairs                        | none, or [positive id, known positive ids] |
            +-------------------------------------------------+--------------------------------------------+
            | (anchor, positive, negative_1, ..., negative_n) | none, or [positive id, negative ids,       |
            |                                                 | known positive ids]                        |
            +-------------------------------------------------+--------------------------------------------+

        Recommendations:
            - Build the pairs with `st_lmtx.build_pseudo_label_dataset`, which writes the label column.

        Relations:
            - `MultipleNegativesRankingLoss` uses the
              same in-batch negatives with a softmax cross-entropy instead of a hinge and cannot mask the
              other positives of a multi-label document.

        Example:
            ::

                from datasets import Dataset
                from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
                from st_lmtx import LMTXTripletLoss

                model = SentenceTransformer("sentence-transformers/all-MiniLM-L6-v2")
                train_dataset = Dataset.from_dict({
                    "anchor": ["Wheat and corn exports rose ...", "The central bank cut its rate ..."],
                    "positive": ["Wheat", "Interest Rates"],
                    # label id of the positive, then the document's other "yes" labels, -1 padded
                    "label": [[7, 3], [12, -1]],
                })
                loss = LMTXTripletLoss(model)
                trainer = SentenceTransformerTrainer(model=model, train_dataset=train_dataset, loss=loss)
                trainer.train()
        """
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        if num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.model = model
        self.margin = margin
        self.num_negatives = num_negatives
        self.softmax_weighting = softmax_weighting
        self.temperature = temperature
        self.deduplicate_labels = deduplicate_labels

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> Tensor:
        embeddings = embed_columns(self.model, sentence_features)
        return self.compute_loss_from_embeddings(embeddings, labels)

    def compute_loss_from_embeddings(self, embeddings: list[Tensor], labels: Tensor | None = None) -> Tensor:
        """
        Compute the loss from embeddings.

        Args:
            embeddings: ``[documents, positives, *negatives]``, each ``(batch_size, dim)``
            labels: ``None`` or a ``(batch_size, n)`` integer tensor laid out as described in the class docstring

        Returns:
            Loss value
        """
        if len(embeddings) < 2:
            raise ValueError("LMTXTripletLoss needs (document, positive label[, negatives...]) columns")
        anchors = embeddings[0]
        batch_size = anchors.size(0)
        num_candidate_columns = len(embeddings) - 1
        # Candidates are laid out column-major: all positives first, then each negative column.
        candidates = torch.cat(embeddings[1:], dim=0)
        sims = cos_sim(anchors, candidates)  # (batch_size, batch_size * num_candidate_columns)
        rows = torch.arange(batch_size, device=sims.device)
        positive_sims = sims[rows, rows]

        invalid = self._invalid_negatives(batch_size, num_candidate_columns, labels, sims.device)
        negative_sims = sims.masked_fill(invalid, float("-inf"))
        k = min(self.num_negatives, negative_sims.size(1))
        hardest, _ = negative_sims.topk(k, dim=1)
        is_negative = torch.isfinite(hardest)
        hinge = F.relu(hardest - positive_sims.unsqueeze(1) + self.margin)
        hinge = torch.where(is_negative, hinge, torch.zeros_like(hinge))

        if self.softmax_weighting:
            violating = hinge > 0
            logits = torch.where(violating, hardest / self.temperature, torch.full_like(hardest, float("-inf")))
            # Rows with no violator have an all -inf row: their loss is 0 either way, so give them zero weights.
            weights = torch.where(violating.any(dim=1, keepdim=True), torch.softmax(logits, dim=1), 0.0)
            weights = torch.nan_to_num(weights, nan=0.0)
        else:
            weights = torch.full_like(hinge, 1.0 / self.num_negatives)
        return (weights * hinge).sum(dim=1).mean()

    def _invalid_negatives(
        self, batch_size: int, num_candidate_columns: int, labels: Tensor | None, device: torch.device
    ) -> Tensor:
        """``invalid[i, j]``: candidate ``j`` must not be a negative of document ``i``."""
        num_candidates = batch_size * num_candidate_columns
        invalid = torch.zeros(batch_size, num_candidates, dtype=torch.bool, device=device)
        rows = torch.arange(batch_size, device=device)
        invalid[rows, rows] = True  # a document's own positive
        if labels is None or labels.numel() == 0:
            return invalid
        labels = labels.to(device).long()
        if labels.dim() == 1:
            labels = labels.unsqueeze(1)
        if labels.size(0) != batch_size or labels.size(1) < num_candidate_columns:
            raise ValueError(
                f"labels must be (batch_size, >= {num_candidate_columns}) label ids, got {tuple(labels.shape)}"
            )
        candidate_ids = labels[:, :num_candidate_columns].T.reshape(-1)  # column-major, like the candidates
        known_positives = torch.cat([labels[:, :1], labels[:, num_candidate_columns:]], dim=1)
        is_known_positive = (candidate_ids[None, :, None] == known_positives[:, None, :]).any(dim=2)
        invalid |= is_known_positive | (candidate_ids < 0)[None, :]
        if self.deduplicate_labels:
            same = candidate_ids[:, None] == candidate_ids[None, :]
            earlier = torch.ones_like(same).tril(diagonal=-1)
            repeated = (same & earlier).any(dim=1)  # a later copy of a label already among the candidates
            invalid |= repeated[None, :]
        return invalid

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "margin": self.margin,
            "num_negatives": self.num_negatives,
            "softmax_weighting": self.softmax_weighting,
            "temperature": self.temperature,
            "deduplicate_labels": self.deduplicate_labels,
        }

    @property
    def citation(self) -> str:
        return """
@inproceedings{zhang2025lmtx,
    title={Large Language Model as a Teacher for Zero-shot Tagging at Extreme Scales},
    author={Jinbin Zhang and Nasib Ullah and Rohit Babbar},
    booktitle={Proceedings of the 31st International Conference on Computational Linguistics (COLING 2025)},
    year={2025},
    eprint={2406.09288},
    archivePrefix={arXiv},
    primaryClass={cs.CL}
}
"""
