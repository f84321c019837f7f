"""RTS (Random Text Segments): self-supervised (anchor, positive) pairs cut from unlabeled documents.

RTS is the self-supervised baseline of "Extreme Zero-Shot Learning for Extreme Text Classification" (Xiong, Chang,
Hsieh, Yu and Dhillon, NAACL 2022, https://aclanthology.org/2022.naacl-main.399, https://arxiv.org/abs/2112.08652),
which the LMTX paper (https://arxiv.org/abs/2406.09288) compares with. It needs
neither labels nor a teacher: two random word spans of the same document are a positive pair, and the spans of
the other documents of the batch are its negatives. A bi-encoder trained so learns which short texts belong to
which document, a rough stand-in for "which label belongs to which document", and LMTX can start its curriculum
from it (``LMTXArguments(warm_start="rts")``) instead of from the raw base model.

Example::

    from st_lmtx.rts import RTSConfig, rts_pairs

    docs = ["Farmers reported a strong wheat harvest and wheat exports rose to a record in March ...", ...]
    pairs = rts_pairs(docs, RTSConfig(min_words=8, max_words=32, seed=0))
    pairs.column_names  # ['anchor', 'positive']: two spans of the same document per row

The pairs train with :class:`~st_lmtx.losses.LMTXTripletLoss` without a label column: every other row's
``positive`` is a negative.

This module is a stage of its own: it does not import the trainer.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from datasets import Dataset

logger = logging.getLogger(__name__)

# Draws of the second span before looking through every span for one with a different text (repetitive documents).
_DRAWS = 10


@dataclass(frozen=True)
class RTSConfig:
    """How :func:`rts_pairs` cuts segments.

    Args:
        min_words / max_words: a segment's length in (whitespace-separated) words, drawn uniformly in
            ``[min_words, min(max_words, words in the document)]``.
        pairs_per_document: pairs drawn from each document (each a fresh pair of spans). With more than one, a
            document's other pairs can land in the same batch as (false) negatives: 1 avoids that.
        seed: the same texts and seed give the same pairs.
    """

    min_words: int = 8
    max_words: int = 32
    pairs_per_document: int = 1
    seed: int = 42

    def __post_init__(self) -> None:
        if not 1 <= self.min_words <= self.max_words:
            raise ValueError(f"RTS segments need 1 <= min_words <= max_words, got {self.min_words}, {self.max_words}")
        if self.pairs_per_document < 1:
            raise ValueError(f"pairs_per_document must be >= 1, got {self.pairs_per_document}")


@dataclass
class RTSSample:
    """The segment pairs of :func:`rts_sample`, and the documents too short to give two different segments."""

    anchors: list[str] = field(default_factory=list)
    positives: list[str] = field(default_factory=list)
    skipped_documents: int = 0

    def __len__(self) -> int:
        return len(self.anchors)

    def to_dataset(self) -> Dataset:
        return Dataset.from_dict({"anchor": self.anchors, "positive": self.positives})


def rts_sample(texts: Sequence[str], config: RTSConfig | None = None) -> RTSSample:
    """Two random word spans per pair, of the same document, whose texts differ when the document has two
    different spans at all. A document with ``min_words`` words or fewer has a single span of the shortest
    length (or none) and is skipped; :attr:`RTSSample.skipped_documents` counts those."""
    config = config or RTSConfig()
    rng = random.Random(config.seed)
    sample = RTSSample()
    for text in texts:
        words = text.split()
        if len(words) <= config.min_words:
            sample.skipped_documents += 1
            continue
        for _ in range(config.pairs_per_document):
            first = _span(words, config, rng)
            second = _span(words, config, rng)
            for _ in range(_DRAWS):
                if second != first:
                    break
                second = _span(words, config, rng)
            else:
                second = _other_span(words, first, config, rng) or second
            sample.anchors.append(first)
            sample.positives.append(second)
    return sample


def rts_pairs(texts: Sequence[str], config: RTSConfig | None = None) -> Dataset:
    """The RTS training pairs of ``texts`` as a ``datasets.Dataset`` with columns ``anchor`` and ``positive``
    (see :func:`rts_sample`; the count of skipped short documents is logged)."""
    sample = rts_sample(texts, config)
    if sample.skipped_documents:
        logger.info("RTS: %d of %d documents are too short for two segments and were skipped",
                    sample.skipped_documents, len(texts))  # fmt: skip
    return sample.to_dataset()


def _span(words: list[str], config: RTSConfig, rng: random.Random) -> str:
    length = rng.randint(config.min_words, min(config.max_words, len(words)))
    start = rng.randint(0, len(words) - length)
    return " ".join(words[start : start + length])


def _other_span(words: list[str], text: str, config: RTSConfig, rng: random.Random) -> str | None:
    """A random span whose text is not ``text``, looking through all of them (a very repetitive document)."""
    spans = [(start, length) for length in range(config.min_words, min(config.max_words, len(words)) + 1)
             for start in range(len(words) - length + 1)]  # fmt: skip
    rng.shuffle(spans)
    for start, length in spans:
        candidate = " ".join(words[start : start + length])
        if candidate != text:
            return candidate
    return None
