"""LMTXTrainer: the curriculum loop from a label list and unlabeled documents to a trained tagger.

Each round (`CurriculumRound`): encode the documents and labels with the latest model, shortlist the top-k
labels, ask the teacher about the pairs it has not judged yet, turn its "yes" answers into training pairs, train
the bi-encoder with `LMTXTripletLoss` (inside ``SentenceTransformerTrainer``), and measure the round: P@1
as the teacher judges it on a fixed dev sample of documents, and P@k on ``eval_data`` when given. The
loop stops when the stop signal stops improving; the final model is the kept round's, or with
``average_rounds`` (the ``best`` recipe) the average of the weights of the rounds the dev sample cannot tell apart
from it (`RunState.rounds_to_average`), measured like a round.

The output folder's root is the final model (a SentenceTransformer folder with the label set and index beside
it, a model card and a metrics picture). Everything else lives under ``lmtx-work/``: per round the shortlist,
the pseudo-labels, the metrics and the model; the run's state (`RunState`); and the teacher's answer
cache. A ``fit`` on the same folder resumes after the last finished round, and the cache makes the teacher part
of an interrupted round free. Under ``torchrun`` / ``accelerate launch`` only the main process judges and
writes; the others train with it (`Processes`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainingArguments
from transformers import TrainerCallback

from st_lmtx.arguments import LMTXArguments
from st_lmtx.errors import InputError
from st_lmtx.evaluation.llm_judged_evaluator import LLMJudgedEvaluator
from st_lmtx.evaluation.xmc_evaluator import XMCEvaluator
from st_lmtx.files import atomic_path
from st_lmtx.inputs import DocumentSet, DocumentsLike, LabelsLike, load_documents, load_labels
from st_lmtx.layout import BASE_MODEL_DIR, CACHE_FILE, WORK_DIR
from st_lmtx.models import canonical_name, load_model
from st_lmtx.shortlist import IndexConfig
from st_lmtx.tagger import push_folder_to_hub
from st_lmtx.teacher.base import Teacher
from st_lmtx.teacher.budget import TeacherBudget
from st_lmtx.teacher.cache import JudgmentCache
from st_lmtx.teacher.factory import default_teacher
from st_lmtx.trainer.averaging import average_models
from st_lmtx.trainer.curriculum import CurriculumRound
from st_lmtx.trainer.final_folder import write_final_folder
from st_lmtx.trainer.processes import Processes
from st_lmtx.trainer.records import RunRecord
from st_lmtx.trainer.round_files import RoundFolder
from st_lmtx.trainer.run_state import RunState, hold_run_folder
from st_lmtx.trainer.spending import RunSpending
from st_lmtx.trainer.training import RoundTrainer, TrainingExtras, train_round

logger = logging.getLogger(__name__)


class LMTXTrainer:
    """Train a zero-shot tagger from label texts and unlabeled documents, with an LLM as the teacher.

    Example::

        from st_lmtx import LMTXTrainer, LMTXArguments, LMTXTagger

        trainer = LMTXTrainer("sentence-transformers/all-MiniLM-L6-v2", ["Wheat", "Crude Oil", "Interest Rates"],
                              args=LMTXArguments(output_dir="my-tagger"))
        model = trainer.fit(documents)           # a list of texts, a Dataset or an LF-XMC trn.json
        LMTXTagger.load("my-tagger").predict(["..."])

    Several processes (``torchrun --nproc_per_node N script.py``): every process runs the same script; the
    main one shortlists, judges and writes, all of them train.

    Args:
        model: a SentenceTransformer, a Hub name or a local folder (the base model).
        labels: any label input `st_lmtx.load_labels` accepts.
        teacher: a `Teacher`; default: see `st_lmtx.teacher.default_teacher`.
        args: `LMTXArguments`.
        training_args: your ``SentenceTransformerTrainingArguments`` for every round's ``SentenceTransformerTrainer``
            (``report_to``, ``fp16``, ``gradient_accumulation_steps``, ``max_grad_norm``, logging, ...); each round
            sets its own output folder, one epoch, the batch, learning rate, warmup and seed, and no checkpoints.
        callbacks: ``TrainerCallback``s handed to every round's trainer.
    """

    def __init__(
        self,
        model: SentenceTransformer | str,
        labels: LabelsLike,
        teacher: Teacher | None = None,
        args: LMTXArguments | None = None,
        training_args: SentenceTransformerTrainingArguments | None = None,
        callbacks: Sequence[TrainerCallback] | None = None,
    ) -> None:
        self.args = args or LMTXArguments()
        self.extras = TrainingExtras(training_args, tuple(callbacks or ()))
        if self.args.teacher_budget is not None:
            TeacherBudget.parse(self.args.teacher_budget)  # a clear error before the models load
        self.base_model_name = canonical_name(model if isinstance(model, str) else _model_name(model))
        self.base_model = load_model(model)
        if self.args.max_seq_length:
            self.base_model.max_seq_length = self.args.max_seq_length
        self.labels = load_labels(labels)
        self.output_dir = Path(self.args.output_dir)
        self.work_dir = self.output_dir / WORK_DIR
        self._teacher = teacher
        self._owns_teacher = teacher is None  # then the trainer builds the default teacher and fit releases it
        self.index_config = IndexConfig(hnsw_threshold=self.args.hnsw_threshold, ef_search=self.args.hnsw_ef_search)

    @property
    def teacher(self) -> Teacher:
        if self._teacher is None:
            self._teacher = default_teacher(
                cache=JudgmentCache(self.work_dir / CACHE_FILE), show_progress_bar=self.args.show_progress_bar
            )
        return self._teacher

    def _release_teacher(self) -> None:
        # The embedded teacher holds a 1.1 GB model (or a server process): free it when fit ends, however it
        # ends. A teacher the caller passed in is theirs to close. The next access builds a fresh one.
        if self._owns_teacher and self._teacher is not None:
            teacher, self._teacher = self._teacher, None
            teacher.close()
            teacher.cache.close()

    # ------------------------------------------------------------------ the loop

    def fit(self, docs: DocumentsLike, eval_data: DocumentsLike | None = None) -> SentenceTransformer:
        """Run the curriculum on ``docs`` (their ground truth, if any, is never used for training) and return
        the final model (the kept round's, or with ``average_rounds`` the average of the rounds the dev sample
        cannot tell apart from it). ``eval_data``:
        documents with ground truth (a ``DocumentSet``, an LF-XMC ``tst.json`` path, ...) evaluated every round
        with `XMCEvaluator`. A teacher the trainer built itself (no ``teacher=``) is closed when ``fit``
        returns or fails."""
        processes = Processes.from_env()
        if not processes.is_main:
            return self._follow(processes)
        train = RoundTrainer(self.args, self.extras, processes)
        try:
            with hold_run_folder(self.work_dir):
                return self._fit(docs, eval_data, train)
        except BaseException as e:
            if processes.distributed and not train.training:
                # The others wait for the next round: tell them why there is none (inside training they fail
                # with the collective, and the launcher stops them).
                processes.send({"error": f"{type(e).__name__}: {e}"})
            raise
        finally:
            self._release_teacher()

    def _fit(self, docs: DocumentsLike, eval_data: DocumentsLike | None, train: RoundTrainer) -> SentenceTransformer:
        args = self.args
        documents = load_documents(docs)
        eval_docs = load_documents(eval_data, num_labels=len(self.labels)) if eval_data is not None else None
        if eval_docs is not None and eval_docs.targets is None:
            raise InputError("eval_data needs ground truth (target_ind) to be evaluated")
        teacher = self.teacher  # built here (the default one), not as a side effect of fingerprinting the run
        state = RunState.open(self.work_dir, self._new_record(documents, teacher), args, len(documents))
        train_docs = documents.subset(state.record.train_indices)
        self._save_base_model()
        if teacher.cache.path == ":memory:":
            logger.warning("The teacher has no persistent cache: an interrupted run will ask again")

        xmc, dev = self._evaluators(documents, eval_docs, state, teacher)
        curriculum = CurriculumRound(
            self.labels,
            train_docs,
            teacher,
            args,
            self.work_dir,
            self.index_config,
            train,
            dev,
            xmc,
            str(self.base_model.device),
        )

        self.spending = spending = RunSpending(teacher, state.record, args)
        if not state.record.finished:
            logger.info(spending.plan(len(train_docs), len(state.record.dev_documents)))
        try:
            self._rounds(state, curriculum, spending)
            record = state.record
            best = record.best_round or state.best()
            averaged = state.rounds_to_average() if args.average_rounds else []
            averaged = averaged if len(averaged) >= 2 else []
            if averaged:
                model, record.final = curriculum.average(averaged, record.final)
            else:
                model, record.final = curriculum.model(best), None
        finally:  # however the invocation ends, the record keeps what the teacher cost, and whether it graded
            spending.save_into(state.record)
            state.record.teacher = _described(teacher)
            state.save()
        train.processes.send({"done": best, "average": averaged})
        self._write_final(model, record, eval_docs is not None)
        logger.info(
            "LMTX finished (%s); best round %s%s%s",
            record.stop_reason or "done",
            best,
            f"; the final model averages rounds {averaged}" if averaged else "",
            f"; the teacher's answers were ungraded ({teacher.ungraded_reason})" if teacher.ungraded_reason else "",
        )
        return model

    def _evaluators(
        self, documents: DocumentSet, eval_docs: DocumentSet | None, state: RunState, teacher: Teacher
    ) -> tuple[XMCEvaluator | None, LLMJudgedEvaluator]:
        """The ground-truth evaluator of ``eval_data`` (None without it) and the teacher-judged dev evaluator."""
        args = self.args
        # PSP propensities come from the training documents' ground truth when they have any (evaluation only).
        xmc = (
            XMCEvaluator(
                self.labels,
                eval_docs,
                k_values=args.eval_k,
                name="",
                batch_size=args.encode_batch_size,
                show_progress_bar=args.show_progress_bar,
                write_csv=False,
                train_truth=documents.targets,
                index_config=self.index_config,
            )
            if eval_docs is not None
            else None
        )
        # Held out of training (the best recipe), the dev documents rank the rounds as unseen documents would, at
        # the cost of their judgments; drawn from the training documents (the reference), their whole shortlist
        # under a round's model is what the next round asks about them, so the stop rule costs almost nothing.
        dev = LLMJudgedEvaluator(
            self.labels,
            documents.subset(state.record.dev_documents),
            teacher,
            batch_size=args.encode_batch_size,
            show_progress_bar=args.show_progress_bar,
            index_config=self.index_config,
            k=args.shortlist_k,
        )
        return xmc, dev

    def _rounds(self, state: RunState, curriculum: CurriculumRound, spending: RunSpending) -> None:
        """Round 0, then rounds until the stop rule, ``max_rounds`` or the teacher budget ends the run."""
        args = self.args
        if not state.rounds:
            state.rounds.append(curriculum.zero(spending.dev_stop_at()))
            planned = len(state.record.dev_documents)
            kept = curriculum.dev.keep_measured()
            if len(kept) < planned:
                # The budget's dev share reached these documents: they are the dev sample from now on.
                logger.info(
                    "The dev sample: the %d of %d documents the budget's dev share paid for",
                    len(kept),
                    planned,
                )
                state.record.dev_documents = [state.record.dev_documents[i] for i in kept]
            spending.save_into(state.record)
            state.save()
            estimate = spending.estimate()
            if estimate:
                logger.info("Teacher budget: %s", estimate)
        while not state.record.finished:
            r = state.next_round
            stop_at, spent = spending.stop_at(state.rounds)
            if r > args.max_rounds:
                state.finish(f"reached max_rounds={args.max_rounds}")
            elif spent:
                state.finish(spent)
            else:
                record = curriculum.run(r, stop_at, settle=spending.settles)
                if record is None:
                    state.finish(spending.spent_reason())
                else:
                    state.add_round(record, args.patience)
            spending.save_into(state.record)
            state.save()

    def _save_base_model(self) -> None:
        """A pristine copy of the base model on disk, once: round 0 and every restart from base use it."""
        base_dir = self.work_dir / BASE_MODEL_DIR
        if not (base_dir / "modules.json").exists():
            with atomic_path(base_dir) as tmp:
                self.base_model.save(str(tmp), create_model_card=False)

    def _follow(self, processes: Processes) -> SentenceTransformer:
        """A process other than the main one: train on each round's pairs as they come; return the best model."""
        model = self.base_model  # its starting weights do not matter: DDP copies the main process's
        while True:
            message = processes.receive()
            if "error" in message:
                raise RuntimeError(f"the main LMTX process failed: {message['error']}")  # the main one says why
            if "done" in message:
                best, averaged = message["done"], message.get("average") or []
                folders = [RoundFolder(self.work_dir, r).model_path for r in averaged]
                if averaged and all(f.exists() for f in folders):  # the main process's final model, on one machine
                    return average_models([SentenceTransformer(str(f), device=str(model.device)) for f in folders])
                folder = self.work_dir / BASE_MODEL_DIR if best == 0 else RoundFolder(self.work_dir, best).model_path
                # On one machine (or a shared file system) the best round's model; else the last one trained.
                return SentenceTransformer(str(folder), device=str(model.device)) if folder.exists() else model
            train_round(
                model,
                Dataset.from_dict(message["pairs"]),
                self.args,
                self.work_dir / message["round"],
                processes.world_size,
                is_main=False,
                batch_size=message["batch_size"],
                extras=self.extras,
            )

    def _write_final(self, model: SentenceTransformer, record: RunRecord, has_eval: bool) -> None:
        write_final_folder(self.output_dir, model, self.labels, record, self.args, self.index_config, has_eval)

    def _new_record(self, documents: DocumentSet, teacher: Teacher) -> RunRecord:
        """The record of a new run on ``documents``, with the fingerprint a resumed run must match."""
        h = hashlib.sha256()
        for text in documents.texts:
            h.update(text.encode())
            h.update(b"\0")
        labels = hashlib.sha256("\0".join(self.labels.texts).encode()).hexdigest()
        fingerprint = {
            "documents": h.hexdigest()[:16],
            "labels": labels[:16],
            "base_model": self.base_model_name,
            "teacher": teacher.config(),
            "args": self.args.run_defining(),
        }
        return RunRecord(
            base_model=self.base_model_name,
            num_labels=len(self.labels),
            teacher=_described(teacher),
            args=self.args.to_dict(),
            stop_metric=self.args.stop_metric,
            fingerprint=fingerprint,
        )

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> str:
        """Upload the output folder's final model (not ``lmtx-work/``) to the Hub."""
        return push_folder_to_hub(self.output_dir, repo_id, **kwargs)


def _described(teacher: Teacher) -> dict[str, Any]:
    """The teacher as the run's record and model card tell it: no endpoint (it may name a private host)."""
    return {k: v for k, v in teacher.describe().items() if k != "endpoints"}


def _model_name(model: SentenceTransformer) -> str:
    card = getattr(model, "model_card_data", None)
    return getattr(card, "base_model", None) or getattr(model, "name_or_path", None) or type(model).__name__
