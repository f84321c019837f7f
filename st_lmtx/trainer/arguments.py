"""LMTXArguments: everything that configures an LMTX run, and the named recipes that fill its defaults."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from st_lmtx.evaluation.llm_judged_evaluator import SIGNALS
from st_lmtx.recipes import CALIBRATIONS, DEFAULT_RECIPE, DEV_SOURCES, RECIPES, WARM_STARTS
from st_lmtx.recipes import POSITIVE_POLICIES as POLICIES

@dataclass
class LMTXArguments:
    """Everything that configures an LMTX run.

    ``recipe`` names a preset (:data:`RECIPES`) that fills every recipe setting left at ``None``: ``"best"``
    (the default, the best recipe measured here) or ``"reference"`` (the paper's code). Settings given
    explicitly win over the recipe::

        LMTXArguments()                                   # the best recipe
        LMTXArguments(recipe="reference")                 # the reference code's settings
        LMTXArguments(recipe="reference", positives="top-yes")

    Args:
        output_dir: the run's folder; its root becomes the final model.
        recipe: the preset of the settings marked (recipe) below.
        shortlist_k: labels shortlisted per document and judged by the teacher (paper: 10).
        positives: (recipe) ``random-yes`` (reference), ``top-yes``, ``score-weighted`` or ``student-yes``
            (top-yes in round 1, then the "yes" the shortlisting model ranks highest; see
            :func:`st_lmtx.pseudo_labels.candidate_positives`).
        positive_threshold: minimum teacher score of a usable positive.
        calibration: (recipe) how the teacher's scores are made comparable across labels before a document's
            positive is chosen: ``none``, ``label-prior`` or ``contextual`` (:mod:`st_lmtx.calibration`).
        keep_documents: (recipe) train on this share of the documents with a positive, those whose positive
            scores highest (calibrated); each round's record says how many were left out.
        hard_negatives: add one teacher "no" label per document as a hard negative (paper: hurts; off).
        max_docs: train on a random sample of at most this many documents (paper: 30,000 on large sets).
        margin / num_negatives / softmax_weighting (recipe) / temperature: :class:`LMTXTripletLoss`.
        learning_rate / warmup_steps / batch_size (recipe) / weight_decay / max_grad_norm: the optimiser
            (AdamW, linear decay); ``warmup_steps`` below 1 is a fraction of the round's steps (rounded up,
            but never the whole round: warmup's first step has learning rate 0, so a one-step round would not
            train).
        min_steps_per_round: (recipe) a round trains at least this many optimiser steps however few documents
            it has: the batch shrinks (not below ``num_negatives + 1``, nor 32) and then the round takes more
            passes (:func:`round_schedule`). 0: ``batch_size`` and ``epochs_per_round`` as given.
        accumulate_judgments: (recipe) choose positives among every label judged for a document so far, not
            only among the current round's shortlist (the reference uses the current shortlist).
        epochs_per_round: (recipe) passes over the round's pseudo-labels (a fresh positive draw each pass).
        restart_from_base: (recipe) train every round from the base model (reference) instead of the last
            round's.
        warm_start: ``none`` (the base model as given) or ``rts``: before round 0, train the base model for one
            pass on pairs of random segments of the same training document (:mod:`st_lmtx.rts`, the RTS
            baseline of Xiong et al., NAACL 2022) with :class:`LMTXTripletLoss`; the curriculum starts from it,
            and round 0's record says how it went (``warm_start``).
        rts_segment_words: the (shortest, longest) RTS segment in words.
        max_rounds: (recipe) curriculum rounds at most (reference: 6).
        dev_size: (recipe) documents on which the teacher judges each round's top-k (reference: 800).
        dev_source: (recipe) where the dev documents come from: ``training`` (the reference: among the training
            documents, whose judgments the next round shares) or ``held-out`` (documents no round trains on:
            beyond ``max_docs`` when there are enough, else at most a fifth of the documents are kept out of
            training; they cost the teacher ``dev_size`` x ``shortlist_k`` judgments more in round 0, and their
            new top-k pairs after; :func:`~st_lmtx.trainer.run_state.sample_documents`).
        patience: (recipe) rounds without a better ``stop_metric`` before stopping (reference: 1).
        stop_metric: (recipe) the dev signal that picks the kept round and stops the run, one of
            :data:`~st_lmtx.evaluation.llm_judged_evaluator.SIGNALS` (reference: ``llm_P@1``; see
            :func:`~st_lmtx.evaluation.llm_judged_evaluator.judged_signals`).
        average_rounds: (recipe) the final model is the uniform average of every trained round's weights
            (:func:`~st_lmtx.trainer.averaging.average_models`), measured like a round; the stop rule still
            decides how many rounds run. False: the final model is the round the stop rule kept.
        max_seq_length: truncate documents to this many tokens (None: the model's own).
        eval_k: cut-offs of the evaluation metrics.
        seed: seeds the samples, the positive draws and training.
        hnsw_threshold: label count from which the index is HNSW instead of exact.
        hnsw_ef_search: HNSW's efSearch (candidates kept while searching): higher is slower and closer to exact
            (``benchmarks/inference.py`` sweeps it).
        encode_batch_size: batch size when encoding for shortlists and evaluation.
        show_progress_bar: progress bars for encoding, judging and training.
        training_overrides: any other ``SentenceTransformerTrainingArguments`` field.
    """

    output_dir: str = "lmtx-output"
    recipe: str = DEFAULT_RECIPE
    shortlist_k: int = 10
    positives: str | None = None
    positive_threshold: float = 0.0
    calibration: str | None = None
    keep_documents: float | None = None
    hard_negatives: bool = False
    accumulate_judgments: bool | None = None
    max_docs: int | None = None
    margin: float = 0.3
    num_negatives: int = 10
    softmax_weighting: bool | None = None
    temperature: float = 0.1
    learning_rate: float | None = None
    warmup_steps: float | None = None
    batch_size: int | None = None
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    epochs_per_round: int | None = None
    min_steps_per_round: int | None = None
    restart_from_base: bool | None = None
    warm_start: str = "none"
    rts_segment_words: tuple[int, int] = (8, 32)
    max_rounds: int | None = None
    dev_size: int | None = None
    dev_source: str | None = None
    patience: int | None = None
    stop_metric: str | None = None
    average_rounds: bool | None = None
    max_seq_length: int | None = None
    eval_k: tuple[int, ...] = (1, 3, 5, 10)
    seed: int = 42
    hnsw_threshold: int = 100_000
    hnsw_ef_search: int = 512
    encode_batch_size: int = 64
    show_progress_bar: bool = True
    training_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {tuple(RECIPES)}, got {self.recipe!r}")
        for name, value in RECIPES[self.recipe].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.stop_metric not in SIGNALS:
            raise ValueError(f"stop_metric must be one of {SIGNALS}, got {self.stop_metric!r}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"calibration must be one of {CALIBRATIONS}, got {self.calibration!r}")
        if not 0.0 < self.keep_documents <= 1.0:
            raise ValueError(f"keep_documents must be in (0, 1], got {self.keep_documents}")
        if self.positives not in POLICIES:
            raise ValueError(f"positives must be one of {POLICIES}, got {self.positives!r}")
        for name in ("shortlist_k", "batch_size", "max_rounds", "epochs_per_round", "patience", "hnsw_ef_search"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.min_steps_per_round < 0 or self.dev_size < 0:
            raise ValueError("min_steps_per_round and dev_size must be >= 0")
        if self.max_docs is not None and self.max_docs < 1:
            raise ValueError("max_docs must be >= 1")
        if self.dev_source not in DEV_SOURCES:
            raise ValueError(f"dev_source must be one of {DEV_SOURCES}, got {self.dev_source!r}")
        if self.warm_start not in WARM_STARTS:
            raise ValueError(f"warm_start must be one of {WARM_STARTS}, got {self.warm_start!r}")
        words = tuple(self.rts_segment_words) if isinstance(self.rts_segment_words, (tuple, list)) else ()
        if len(words) != 2 or not all(isinstance(w, int) for w in words) or not 1 <= words[0] <= words[1]:
            raise ValueError(f"rts_segment_words must be (shortest, longest) with 1 <= shortest <= longest, got "
                             f"{self.rts_segment_words!r}")  # fmt: skip
        self.rts_segment_words = words
        self.eval_k = tuple(self.eval_k)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # What must match for a run to be resumed (changing e.g. max_rounds or dev metrics is fine). The recipe's
    # name is not: the settings it filled in are.
    _RUN_DEFINING = (
        "shortlist_k", "positives", "positive_threshold", "calibration", "keep_documents", "hard_negatives", "accumulate_judgments", "max_docs",
        "margin", "num_negatives", "softmax_weighting", "temperature", "learning_rate", "warmup_steps", "batch_size", "weight_decay",
        "epochs_per_round", "min_steps_per_round", "restart_from_base", "dev_size", "dev_source", "max_seq_length", "seed",
        "warm_start", "rts_segment_words",
    )  # fmt: skip

    def run_defining(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._RUN_DEFINING}
