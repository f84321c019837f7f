"""LMTXTrainer: the curriculum loop from a label list and unlabeled documents to a trained tagger.

Each round: encode the documents and labels with the latest model, shortlist the top-k labels, ask the
teacher about the pairs it has not judged yet, turn its "yes" answers into training pairs, train the
bi-encoder with :class:`LMTXTripletLoss` (inside ``SentenceTransformerTrainer``), and measure the round: P@1 as
the teacher judges it on a fixed sample of the training documents, and P@k on ``eval_data`` when given. The
loop stops when the LLM-judged P@1 stops improving and keeps the best round's model.

The output folder's root is the final model (a SentenceTransformer folder with the label set and index
beside it, a model card and a metrics picture). Everything else lives under ``lmtx-work/``: per round the
shortlist, the pseudo-labels, the metrics and the model; the run's state; and the teacher's answer cache. A
``fit`` on the same folder resumes after the last finished round, and the cache makes the teacher part of an
interrupted round free.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from transformers import set_seed

from st_lmtx.evaluation.llm_judged_evaluator import LLMJudgedEvaluator
from st_lmtx.evaluation.xmc_evaluator import XMCEvaluator
from st_lmtx.inputs import DocumentSet, InputError, LabelSet, load_documents, load_labels
from st_lmtx.losses.lmtx_triplet_loss import LMTXTripletLoss
from st_lmtx.model_card import PLOT_FILE, plot_metrics, render_model_card
from st_lmtx.models import canonical_name, load_model
from st_lmtx.pseudo_labels import POLICIES, PseudoLabels, SelectionConfig, pairs_to_dataset, select_pairs
from st_lmtx.shortlist import IndexConfig, LabelIndex, Shortlist, ShortlistMiner, encode
from st_lmtx.tagger import WORK_DIR, push_folder_to_hub, save_label_files
from st_lmtx.teacher.base import Teacher
from st_lmtx.teacher.cache import JudgmentCache
from st_lmtx.teacher.factory import default_teacher

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
CACHE_FILE = "teacher_cache.sqlite"


@dataclass
class LMTXArguments:
    """Everything that configures an LMTX run; defaults are the reference code's.

    Args:
        output_dir: the run's folder; its root becomes the final model.
        shortlist_k: labels shortlisted per document and judged by the teacher (paper: 10).
        positives: ``random-yes`` (reference), ``top-yes`` or ``score-weighted`` (see :mod:`st_lmtx.pseudo_labels`).
        positive_threshold: minimum teacher score of a usable positive.
        hard_negatives: add one teacher "no" label per document as a hard negative (paper: hurts; off).
        max_docs: train on a random sample of at most this many documents (paper: 30,000 on large sets).
        margin / num_negatives / softmax_weighting / temperature: :class:`LMTXTripletLoss`.
        learning_rate / warmup_steps / batch_size / weight_decay / max_grad_norm: the optimiser (AdamW,
            linear decay); ``warmup_steps`` below 1 is a fraction of the round's steps.
        accumulate_judgments: choose positives among every label judged for a document so far, not only
            among the current round's shortlist (the reference uses the current shortlist).
        epochs_per_round: passes over the round's pseudo-labels (a fresh positive draw each pass).
        restart_from_base: train every round from the base model (reference) instead of the last round's.
        max_rounds: curriculum rounds at most (reference: 6).
        dev_size: training documents on which the teacher judges each round's top-1 (reference: 800).
        patience: rounds without LLM-judged P@1 improvement before stopping (reference: 1).
        max_seq_length: truncate documents to this many tokens (None: the model's own).
        eval_k: cut-offs of the evaluation metrics.
        seed: seeds the samples, the positive draws and training.
        hnsw_threshold: label count from which the index is HNSW instead of exact.
        encode_batch_size: batch size when encoding for shortlists and evaluation.
        show_progress_bar: progress bars for encoding, judging and training.
        training_overrides: any other ``SentenceTransformerTrainingArguments`` field.
    """

    output_dir: str = "lmtx-output"
    shortlist_k: int = 10
    positives: str = "random-yes"
    positive_threshold: float = 0.0
    hard_negatives: bool = False
    accumulate_judgments: bool = False
    max_docs: int | None = None
    margin: float = 0.3
    num_negatives: int = 10
    softmax_weighting: bool = False
    temperature: float = 0.1
    learning_rate: float = 2e-4
    warmup_steps: float = 100
    batch_size: int = 128
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    epochs_per_round: int = 1
    restart_from_base: bool = True
    max_rounds: int = 6
    dev_size: int = 800
    patience: int = 1
    max_seq_length: int | None = None
    eval_k: tuple[int, ...] = (1, 3, 5, 10)
    seed: int = 42
    hnsw_threshold: int = 100_000
    encode_batch_size: int = 64
    show_progress_bar: bool = True
    training_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.positives not in POLICIES:
            raise ValueError(f"positives must be one of {POLICIES}, got {self.positives!r}")
        for name in ("shortlist_k", "batch_size", "max_rounds", "epochs_per_round", "patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_docs is not None and self.max_docs < 1:
            raise ValueError("max_docs must be >= 1")
        self.eval_k = tuple(self.eval_k)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    # What must match for a run to be resumed (changing e.g. max_rounds or dev metrics is fine).
    _RUN_DEFINING = (
        "shortlist_k", "positives", "positive_threshold", "hard_negatives", "accumulate_judgments", "max_docs",
        "margin", "num_negatives", "softmax_weighting", "temperature", "learning_rate", "warmup_steps", "batch_size", "weight_decay",
        "epochs_per_round", "restart_from_base", "dev_size", "max_seq_length", "seed",
    )  # fmt: skip

    def run_defining(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._RUN_DEFINING}


class LMTXTrainer:
    """Train a zero-shot tagger from label texts and unlabeled documents, with an LLM as the teacher.

    Example::

        from st_lmtx import LMTXTrainer, LMTXArguments, LMTXTagger

        trainer = LMTXTrainer("sentence-transformers/all-MiniLM-L6-v2", ["Wheat", "Crude Oil", "Interest Rates"],
                              args=LMTXArguments(output_dir="my-tagger"))
        model = trainer.fit(documents)           # a list of texts, a Dataset or an LF-XMC trn.json
        LMTXTagger.load("my-tagger").predict(["..."])

    Args:
        model: a SentenceTransformer, a Hub name or a local folder (the base model).
        labels: any label input :func:`st_lmtx.load_labels` accepts.
        teacher: a :class:`Teacher`; default: see :func:`st_lmtx.teacher.default_teacher`.
        args: :class:`LMTXArguments`.
    """

    def __init__(
        self,
        model: SentenceTransformer | str,
        labels: Any,
        teacher: Teacher | None = None,
        args: LMTXArguments | None = None,
    ) -> None:
        self.args = args or LMTXArguments()
        self.base_model_name = canonical_name(model if isinstance(model, str) else _model_name(model))
        self.base_model = load_model(model)
        if self.args.max_seq_length:
            self.base_model.max_seq_length = self.args.max_seq_length
        self.labels = load_labels(labels)
        self.output_dir = Path(self.args.output_dir)
        self.work_dir = self.output_dir / WORK_DIR
        self._teacher = teacher
        self._owns_teacher = teacher is None  # then the trainer builds the default teacher and fit releases it
        self.index_config = IndexConfig(hnsw_threshold=self.args.hnsw_threshold)

    @property
    def teacher(self) -> Teacher:
        if self._teacher is None:
            self._teacher = default_teacher(cache=JudgmentCache(self.work_dir / CACHE_FILE),
                                            show_progress_bar=self.args.show_progress_bar)  # fmt: skip
        return self._teacher

    def _release_teacher(self) -> None:
        # The embedded teacher holds a 1.1 GB model (or a server process): free it when fit ends, however it
        # ends. A teacher the caller passed in is theirs to close. The next access builds a fresh one.
        if self._owns_teacher and self._teacher is not None:
            teacher, self._teacher = self._teacher, None
            teacher.close()
            teacher.cache.close()

    # ------------------------------------------------------------------ the loop

    def fit(self, docs: Any, eval_data: Any = None) -> SentenceTransformer:
        """Run the curriculum on ``docs`` (their ground truth, if any, is never used for training) and return
        the best round's model. ``eval_data``: documents with ground truth (a ``DocumentSet``, an LF-XMC
        ``tst.json`` path, ...) evaluated every round with :class:`XMCEvaluator`. A teacher the trainer built
        itself (no ``teacher=``) is closed when ``fit`` returns or fails."""
        try:
            return self._fit(docs, eval_data)
        finally:
            self._release_teacher()

    def _fit(self, docs: Any, eval_data: Any) -> SentenceTransformer:
        args = self.args
        documents = load_documents(docs)
        eval_docs = load_documents(eval_data, num_labels=len(self.labels)) if eval_data is not None else None
        if eval_docs is not None and eval_docs.targets is None:
            raise InputError("eval_data needs ground truth (target_ind) to be evaluated")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        state = self._load_or_init_state(documents)
        if not (self.work_dir / "base-model" / "modules.json").exists():
            # A pristine copy on disk: the reference restarts every round from the base weights.
            self.base_model.save(str(self.work_dir / "base-model"), create_model_card=False)
        train_docs = documents.subset(state["train_indices"])
        dev_docs = train_docs.subset(state["dev_indices"])
        teacher = self.teacher
        if teacher.cache.path == ":memory:":
            logger.warning("The teacher has no persistent cache: an interrupted run will ask again")

        # PSP propensities come from the training documents' ground truth when they have any (evaluation only).
        xmc = XMCEvaluator(self.labels, eval_docs, k_values=args.eval_k, name="", batch_size=args.encode_batch_size,
                           show_progress_bar=args.show_progress_bar, write_csv=False, train_truth=documents.targets,
                           index_config=self.index_config) if eval_docs is not None else None  # fmt: skip
        # The dev documents are training documents: judging their whole shortlist under a round's model is what
        # the next round asks about them, so the stop rule costs the teacher almost nothing extra.
        dev = LLMJudgedEvaluator(self.labels, dev_docs, teacher, batch_size=args.encode_batch_size,
                                 show_progress_bar=args.show_progress_bar, index_config=self.index_config,
                                 k=args.shortlist_k)  # fmt: skip

        rounds: list[dict[str, Any]] = state["rounds"]
        if not rounds:
            # Round 0 is the base model, for the record. Its dev pairs are round 1's shortlisted pairs of the
            # dev documents, so round 1 finds them in the cache: the record costs no extra teacher calls.
            rounds.append(self._round_zero(dev, xmc))
            self._save_state(state)

        while not state["finished"]:
            r = len(rounds)
            if r > args.max_rounds:
                state["finished"] = True
                state["stop_reason"] = f"reached max_rounds={args.max_rounds}"
                break
            record = self._run_round(r, train_docs, dev, xmc)
            rounds.append(record)
            best = self._best_round(rounds)
            state["best_round"] = best
            since_best = r - best
            if since_best >= args.patience:
                state["finished"] = True
                state["stop_reason"] = f"LLM-judged P@1 did not improve for {since_best} round(s)"
            self._save_state(state)

        best = state["best_round"] or self._best_round(rounds)
        model = self._round_model(best) if best else self._fresh_base()
        self._write_final(model, state, eval_docs is not None)
        logger.info("LMTX finished (%s); best round %s", state.get("stop_reason", "done"), best)
        return model

    def _round_zero(self, dev: LLMJudgedEvaluator, xmc: XMCEvaluator | None) -> dict[str, Any]:
        before = self.teacher.usage.to_dict()
        record: dict[str, Any] = {"round": 0, "dev": dev(self.base_model)}
        record["teacher_usage"] = self._usage_since(before)
        record["dev_teacher_usage"] = dev.last_usage.to_dict()
        if xmc is not None:
            record["eval"] = xmc(self.base_model)
        return record

    def _run_round(self, r: int, train_docs: DocumentSet, dev: LLMJudgedEvaluator,
                   xmc: XMCEvaluator | None) -> dict[str, Any]:  # fmt: skip
        args = self.args
        round_dir = self.work_dir / f"round-{r:02d}"
        round_dir.mkdir(parents=True, exist_ok=True)
        logger.info("LMTX round %d: %d training documents", r, len(train_docs))
        started = time.perf_counter()
        usage_before = self.teacher.usage.to_dict()

        # 1. Shortlist with the latest model (the base model in round 1).
        previous = self._round_model(r - 1) if r > 1 else self._fresh_base()
        shortlist_path = round_dir / "shortlist.npz"
        if shortlist_path.exists():
            shortlist = Shortlist.load(shortlist_path)
        else:
            miner = ShortlistMiner(previous, self.labels, self.index_config, args.encode_batch_size,
                                   args.show_progress_bar)  # fmt: skip
            shortlist = miner.mine(train_docs.texts, k=args.shortlist_k)
            shortlist.save(shortlist_path)

        # 2. The teacher judges the pairs it has not seen (the cache answers the rest).
        candidates = [[self.labels.texts[j] for j in shortlist.for_doc(i)] for i in range(len(shortlist))]
        judged = self.teacher.judge(train_docs.texts, candidates, desc=f"Teacher (round {r})")
        pseudo = PseudoLabels.from_judgments(shortlist, judged.judgments)
        if args.accumulate_judgments and r > 1:
            pseudo = pseudo.merged_with(PseudoLabels.load(self.work_dir / f"round-{r - 1:02d}" / "pseudo_labels.jsonl"))
        pseudo.save(round_dir / "pseudo_labels.jsonl", train_docs.ids, self.labels)
        stats = pseudo.stats()
        logger.info("Round %d pseudo-labels: %s", r, stats)

        # 3. Train.
        selection = SelectionConfig(positives=args.positives, threshold=args.positive_threshold,
                                    hard_negatives=args.hard_negatives, epochs=args.epochs_per_round,
                                    seed=args.seed + r)  # fmt: skip
        pairs = select_pairs(pseudo, len(self.labels), selection)
        dataset = pairs_to_dataset(pairs, train_docs, self.labels)
        if len(dataset) == 0:
            raise RuntimeError(f"round {r}: the teacher said yes to no shortlisted label; nothing to train on")
        model = self._fresh_base() if args.restart_from_base or r == 1 else previous
        train_seconds = self._train(model, dataset, round_dir)
        model.save(str(round_dir / "model"), create_model_card=False)

        # 4. Measure: the teacher judges the new top-1 on the dev sample; ground truth when given.
        record: dict[str, Any] = {
            "round": r,
            "pseudo_labels": stats,
            "training_pairs": len(dataset),
            "train_seconds": train_seconds,
        }
        if train_docs.targets is not None:  # ground truth measures the pseudo-labels, never trains
            record["pseudo_label_precision"] = _pseudo_label_precision(pairs, pseudo, train_docs)
        # The last possible round has no next round to judge these documents' shortlists for: top-1 only.
        dev.k = 1 if r >= args.max_rounds else args.shortlist_k
        record["dev"] = dev(model)
        record["dev_teacher_usage"] = dev.last_usage.to_dict()  # the part of the round's usage the stop rule took
        record["teacher_usage"] = self._usage_since(usage_before)  # shortlist and dev judgments of the round
        if xmc is not None:
            record["eval"] = xmc(model)
        record["seconds"] = time.perf_counter() - started
        (round_dir / "metrics.json").write_text(json.dumps(record, indent=2))
        return record

    def _usage_since(self, before: dict[str, Any]) -> dict[str, Any]:
        return {k: v - before[k] for k, v in self.teacher.usage.to_dict().items()}

    def _train(self, model: SentenceTransformer, dataset, round_dir: Path) -> float:
        args = self.args
        set_seed(args.seed)
        steps = -(-len(dataset) // args.batch_size)
        if args.warmup_steps >= 1 and args.warmup_steps > steps:
            logger.warning(
                "warmup_steps=%d exceeds this round's %d training steps: the learning rate never reaches %.1e. "
                "For small runs pass a fraction (e.g. warmup_steps=0.1).", args.warmup_steps, steps, args.learning_rate,
            )  # fmt: skip
        training_args = SentenceTransformerTrainingArguments(
            output_dir=str(round_dir / "checkpoints"),
            num_train_epochs=1,  # epochs_per_round is in the dataset: a fresh positive draw per pass
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            warmup_steps=args.warmup_steps,
            weight_decay=args.weight_decay,
            max_grad_norm=args.max_grad_norm,
            lr_scheduler_type="linear",
            seed=args.seed,
            save_strategy="no",
            report_to="none",
            logging_steps=max(1, steps // 10),
            disable_tqdm=not args.show_progress_bar,
            dataloader_pin_memory=torch.cuda.is_available(),
            **args.training_overrides,
        )
        trainer = SentenceTransformerTrainer(model=model, args=training_args, train_dataset=dataset, loss=self._loss(model))
        started = time.perf_counter()
        trainer.train()
        shutil.rmtree(round_dir / "checkpoints", ignore_errors=True)
        return time.perf_counter() - started

    def _loss(self, model: SentenceTransformer) -> LMTXTripletLoss:
        a = self.args
        return LMTXTripletLoss(model, margin=a.margin, num_negatives=a.num_negatives,
                               softmax_weighting=a.softmax_weighting, temperature=a.temperature)  # fmt: skip

    # ------------------------------------------------------------------ models and state

    def _fresh_base(self) -> SentenceTransformer:
        return self._load(self.work_dir / "base-model")

    def _round_model(self, r: int) -> SentenceTransformer:
        return self._fresh_base() if r == 0 else self._load(self.work_dir / f"round-{r:02d}" / "model")

    def _load(self, path: Path) -> SentenceTransformer:
        model = SentenceTransformer(str(path), device=str(self.base_model.device))
        if self.args.max_seq_length:
            model.max_seq_length = self.args.max_seq_length
        return model

    def _best_round(self, rounds: list[dict[str, Any]]) -> int:
        trained = [r for r in rounds if r["round"] > 0]
        if not trained:
            return 0
        # Highest LLM-judged P@1; ties go to the earlier round (the reference stops on "not better").
        return max(trained, key=lambda r: (r["dev"]["llm_P@1"], -r["round"]))["round"]

    def _fingerprint(self, documents: DocumentSet) -> dict[str, Any]:
        h = hashlib.sha256()
        for text in documents.texts:
            h.update(text.encode())
            h.update(b"\0")
        labels = hashlib.sha256("\0".join(self.labels.texts).encode()).hexdigest()
        return {
            "documents": h.hexdigest()[:16],
            "labels": labels[:16],
            "base_model": self.base_model_name,
            "teacher": self.teacher.config(),
            "args": self.args.run_defining(),
        }

    def _load_or_init_state(self, documents: DocumentSet) -> dict[str, Any]:
        path = self.work_dir / STATE_FILE
        fingerprint = json.loads(json.dumps(self._fingerprint(documents)))
        if path.exists():
            state = json.loads(path.read_text())
            # A setting added after the run started matches when it is at its default.
            defaults = LMTXArguments().run_defining()
            stored_args = state["fingerprint"].get("args", {})
            for name, value in fingerprint["args"].items():
                if name not in stored_args and value == defaults[name]:
                    stored_args[name] = value
            if state["fingerprint"] != fingerprint:
                changed = [k for k in fingerprint if k != "args" and state["fingerprint"].get(k) != fingerprint[k]]
                changed += [f"args ({n})" for n, v in fingerprint["args"].items() if stored_args.get(n) != v]
                raise RuntimeError(
                    f"{self.output_dir} holds a run with different {', '.join(changed)}; use another output_dir "
                    "or delete it"
                )
            done = [r["round"] for r in state["rounds"]]
            if state["finished"] and len(done) - 1 < self.args.max_rounds and "max_rounds" in state.get("stop_reason", ""):
                state["finished"] = False  # a larger max_rounds continues a run that stopped on the cap
            logger.info("Resuming %s after round %d", self.output_dir, max(done) if done else -1)
            return state
        rng = random.Random(self.args.seed)
        indices = list(range(len(documents)))
        if self.args.max_docs is not None and self.args.max_docs < len(documents):
            indices = sorted(rng.sample(indices, self.args.max_docs))
        dev = sorted(rng.sample(range(len(indices)), min(self.args.dev_size, len(indices))))
        state = {
            "fingerprint": fingerprint,
            "train_indices": indices,
            "dev_indices": dev,
            "rounds": [],
            "best_round": None,
            "finished": False,
        }
        self._save_state(state)
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        path = self.work_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, path)  # atomic: a crash leaves the old state or the new one, never half of one

    def _write_final(self, model: SentenceTransformer, state: dict[str, Any], has_eval: bool) -> None:
        root = self.output_dir
        model.save(str(root), create_model_card=False)
        label_embeddings = encode(model, self.labels.texts, self.args.encode_batch_size, False)
        save_label_files(root, self.labels, LabelIndex.build(label_embeddings, self.index_config))
        rounds = state["rounds"]
        has_plot = plot_metrics(rounds, root / PLOT_FILE) is not None
        eval_keys = [f"P@{k}" for k in self.args.eval_k] + [f"R@{max(self.args.eval_k)}"] if has_eval else []
        summary = {
            "base_model": self.base_model_name,
            "base_model_is_hub": not Path(self.base_model_name).exists(),
            "num_labels": len(self.labels),
            "teacher": self.teacher.describe(),
            "rounds": rounds,
            "best_round": state["best_round"],
            "args": self.args.to_dict(),
            "loss": self._loss(model).get_config_dict(),
            "citation": self._loss(model).citation,
            "has_plot": has_plot,
            "eval_keys": eval_keys,
            "eval_name": "eval_data" if has_eval else None,
        }  # fmt: skip
        (root / "README.md").write_text(render_model_card(summary), encoding="utf-8")
        (root / "lmtx_run.json").write_text(json.dumps(
            {"best_round": state["best_round"], "stop_reason": state.get("stop_reason"), "rounds": rounds,
             "teacher": self.teacher.describe() | {"endpoints": None}, "args": self.args.to_dict()}, indent=2))  # fmt: skip

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload the output folder's final model (not ``lmtx-work/``) to the Hub."""
        return push_folder_to_hub(self.output_dir, repo_id, **kwargs)


def _pseudo_label_precision(pairs: list, pseudo: PseudoLabels, train_docs: DocumentSet) -> dict[str, float]:
    """Against ground truth (evaluation only): the share of trained positives that are true labels, and the
    share of "yes" labels that are."""
    truth = [set(t) for t in train_docs.targets]
    trained = [p.positive in truth[p.doc] for p in pairs]
    yes = [j.label in truth[d.doc] for d in pseudo.docs for j in d.yes]
    return {
        "trained_positive_precision": sum(trained) / max(len(trained), 1),
        "yes_precision": sum(yes) / max(len(yes), 1),
    }


def _model_name(model: SentenceTransformer) -> str:
    card = getattr(model, "model_card_data", None)
    return getattr(card, "base_model", None) or getattr(model, "name_or_path", None) or type(model).__name__


