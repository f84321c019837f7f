"""CurriculumRound: one LMTX round, top-down. It shortlists with the latest model, has the teacher judge the new
pairs, turns the answers into pseudo-labels and training pairs, trains, and measures the new model.

Its files are the round folders' (`RoundFolder`); how training is spread over processes is the caller's
(the ``train`` function it is given).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from datasets import Dataset
from sentence_transformers import SentenceTransformer

from st_lmtx.arguments import LMTXArguments
from st_lmtx.errors import NothingToTrainError
from st_lmtx.evaluation.llm_judged_evaluator import LLMJudgedEvaluator
from st_lmtx.evaluation.xmc_evaluator import XMCEvaluator
from st_lmtx.inputs import DocumentSet, LabelSet
from st_lmtx.layout import BASE_MODEL_DIR
from st_lmtx.pseudo_labels import (
    PseudoLabels,
    PseudoLabelStats,
    build_lmtx_dataset,
    teacher_warnings,
    usable_documents,
)
from st_lmtx.shortlist import IndexConfig, Shortlist, mine_shortlists
from st_lmtx.teacher.base import Teacher
from st_lmtx.teacher.generate import judge_shortlists
from st_lmtx.trainer.averaging import average_models
from st_lmtx.trainer.records import RoundRecord, RoundSchedule
from st_lmtx.trainer.round_files import RoundFolder, load_saved_model
from st_lmtx.trainer.training import round_schedule

logger = logging.getLogger(__name__)

# train(model, dataset, round folder, global batch size) -> seconds; trains the model in place.
TrainFunction = Callable[[SentenceTransformer, Dataset, Path, int], float]


class CurriculumRound:
    def __init__(
        self,
        labels: LabelSet,
        train_docs: DocumentSet,
        teacher: Teacher,
        args: LMTXArguments,
        work_dir: Path,
        index_config: IndexConfig,
        train: TrainFunction,
        dev: LLMJudgedEvaluator,
        xmc: XMCEvaluator | None,
        device: str,
    ) -> None:
        self.labels, self.train_docs, self.teacher, self.args = labels, train_docs, teacher, args
        self.work_dir, self.index_config, self.train, self.dev, self.xmc = work_dir, index_config, train, dev, xmc
        self.device = device

    def run(self, r: int, stop_at: float | None = None, settle: bool = False) -> RoundRecord | None:
        """Round ``r``; with ``stop_at`` (a teacher budget), its judging stops when the spending would pass it,
        and the documents not reached train on earlier rounds' judgments only; with ``settle``, a document whose
        top-1 the teacher already called relevant is not asked again. None: the budget stopped it before any
        "yes"."""
        args, folder = self.args, RoundFolder(self.work_dir, r)
        logger.info("LMTX round %d: %d training documents", r, len(self.train_docs))
        started, usage_before = time.perf_counter(), replace(self.teacher.usage)

        previous = self.model(r - 1)  # the base model in round 1
        shortlist = self.shortlist(folder, previous)
        pseudo, stats, unfinished, settled = self.pseudo_labels(folder, shortlist, stop_at, settle)
        stopped = unfinished is not None
        logger.info("Round %d pseudo-labels: %s", r, stats)
        # What the answers say about the teacher, from the documents it was asked about.
        judged = PseudoLabels([d for d in pseudo.docs if d.judged]).stats()
        warnings = teacher_warnings(judged, self.teacher.ungraded_reason) if stats.pairs else []
        for warning in warnings:
            logger.warning("Round %d: %s", r, warning)
        if settled:
            logger.info("Round %d: %d settled documents (top-1 already a 'yes') were not asked again", r, settled)
        if stopped:
            logger.info(
                "Round %d: its share of the teacher budget is spent, with %d of %d documents' shortlists not judged "
                "in full: they train on the labels judged so far, or sit the round out",
                r,
                unfinished,
                len(pseudo.docs),
            )
            if not usable_documents(pseudo, args.positives):
                return None
        dataset, schedule = self.training_data(r, pseudo)
        model = self.model(0) if args.restart_from_base or r == 1 else previous
        train_seconds = self.train(model, dataset, folder.path, schedule.batch_size)
        folder.save_model(model)

        record = RoundRecord(
            round=r,
            pseudo_labels=stats,
            training_pairs=len(dataset),
            schedule=schedule,
            train_seconds=train_seconds,
            warnings=warnings,
            budget_reached=stopped,
            settled_documents=settled,
        )
        if self.train_docs.targets is not None:  # ground truth measures the pseudo-labels, never trains
            record.precision = pseudo_label_precision(pseudo, args.positives, self.train_docs)
        self.measure(record, model)
        record.teacher_usage = self.teacher.usage.since(usage_before)  # shortlist and dev judgments of the round
        record.seconds = time.perf_counter() - started
        folder.save_metrics(record)
        return record

    def zero(self, dev_stop_at: float | None = None) -> RoundRecord:
        """Round 0 is the base model, for the record. With a dev sample of training documents its dev pairs are
        round 1's shortlisted pairs of those documents, so round 1 finds them in the cache. ``dev_stop_at``: the
        budget's spending at which its dev judging stops."""
        usage_before = replace(self.teacher.usage)
        record = RoundRecord(round=0)
        self.measure(record, self.model(0), dev_stop_at=dev_stop_at)
        record.teacher_usage = self.teacher.usage.since(usage_before)
        return record

    # ------------------------------------------------------------------ the steps

    def shortlist(self, folder: RoundFolder, model: SentenceTransformer) -> Dataset:
        """Top-k labels per document under ``model`` (`mine_shortlists`); saved, so a resumed round reuses it."""
        saved = folder.load_shortlist(len(self.train_docs))
        if saved is not None:
            return saved.to_dataset(self.train_docs, self.labels)
        a = self.args
        shortlists = mine_shortlists(
            model,
            self.labels,
            self.train_docs,
            a.shortlist_k,
            batch_size=a.encode_batch_size,
            show_progress_bar=a.show_progress_bar,
            index_config=self.index_config,
        )
        folder.save_shortlist(Shortlist.from_dataset(shortlists))
        return shortlists

    def pseudo_labels(
        self, folder: RoundFolder, shortlists: Dataset, stop_at: float | None = None, settle: bool = False
    ) -> tuple[PseudoLabels, PseudoLabelStats, int | None, int]:
        """The teacher judges the pairs it has not seen (`judge_shortlists`: its cache answers the rest), up to
        ``stop_at``; the judged shortlists with the earlier rounds' judgments of labels no longer shortlisted
        (``accumulate_judgments``), their counts, when the budget stopped the judging how many documents it left
        partly or wholly unjudged (else None), and how many settled documents were not asked again (``settle``:
        from round 2, a document whose top-1 is a known "yes" is asked only what was judged before: the cache)."""
        r = folder.round
        settled = 0
        if settle and r > 1:
            asked = list(shortlists["label_indices"])
            for i, before in enumerate(self.saved_pseudo_labels(r - 1).docs):
                if asked[i] and asked[i][0] in {j.label for j in before.yes}:
                    known = {j.label for j in before.judged}
                    asked[i] = [label for label in asked[i] if label in known]
                    settled += 1
            if settled:
                shortlists = Dataset.from_dict(
                    {
                        "document_id": self.train_docs.ids,
                        "document": self.train_docs.texts,
                        "labels": [[self.labels.texts[j] for j in ids] for ids in asked],
                        "label_indices": asked,
                    }
                )
        usage_before = replace(self.teacher.usage)
        judged = judge_shortlists(self.teacher, shortlists, stop_at=stop_at, desc=f"Teacher (round {r})")
        usage = self.teacher.usage.since(usage_before)
        pseudo = PseudoLabels.from_dataset(judged)
        if self.args.accumulate_judgments and r > 1:
            pseudo = pseudo.merged_with(self.saved_pseudo_labels(r - 1))
        folder.save_pseudo_labels(pseudo, self.train_docs.ids, self.labels)
        stats = pseudo.stats(usage.instruction_like_docs, usage.all_yes_docs)
        unfinished = sum(None in row for row in judged["verdicts"])
        return pseudo, stats, unfinished or None, settled

    def saved_pseudo_labels(self, r: int) -> PseudoLabels:
        """An earlier round's pseudo-labels; rebuilt from its shortlist and the teacher's cache if unreadable."""
        folder = RoundFolder(self.work_dir, r)
        saved = folder.load_pseudo_labels(len(self.train_docs))
        if saved is not None:
            return saved
        return self.pseudo_labels(folder, self.shortlist(folder, self.model(r - 1)))[0]

    def training_data(self, r: int, pseudo: PseudoLabels) -> tuple[Dataset, RoundSchedule]:
        """The round's rows (`build_lmtx_dataset`), as many passes as its schedule asks (a fresh draw each)."""
        a = self.args
        usable = len(usable_documents(pseudo, a.positives))
        if usable == 0:
            raise NothingToTrainError(
                f"round {r}: the teacher said yes to no shortlisted label, so there is nothing to train on. Read "
                "its answers (st-lmtx judgments export) and check the teacher and its prompt, or use a larger teacher"
            )
        schedule = round_schedule(usable, a)
        if schedule.batch_size != a.batch_size or schedule.epochs != 1:
            logger.info(
                "Round %d: %d documents with a positive; training %d pass(es) at batch %d (%d steps) to "
                "reach min_steps_per_round=%d",
                r,
                usable,
                schedule.epochs,
                schedule.batch_size,
                schedule.steps,
                a.min_steps_per_round,
            )
        judged = pseudo.to_dataset(self.train_docs, self.labels)
        return build_lmtx_dataset(judged, a.positives, epochs=schedule.epochs, seed=a.seed + r), schedule

    def measure(
        self, record: RoundRecord, model: SentenceTransformer, last: bool = False, dev_stop_at: float | None = None
    ) -> None:
        """The teacher judges the new top-k on the dev sample (the stop rule); ground truth when given."""
        # The top-1 is all llm_P@1 needs. The rest of a training document's top-k is what the next round asks about
        # it (judged now, it is cached then), so it is judged too unless there is no next round (the last
        # possible round, or a final model: ``last``) or the dev documents are held out of training.
        last = last or record.round >= self.args.max_rounds
        top1_only = self.args.stop_metric == "llm_P@1" and (last or self.args.held_out_dev)
        self.dev.k = 1 if top1_only else self.args.shortlist_k
        record.dev = self.dev(model, stop_at=dev_stop_at)
        record.dev_values = {k: [round(v, 4) for v in values] for k, values in self.dev.last_documents.items()}
        record.dev_teacher_usage = self.dev.last_usage  # the part of the round's usage it took
        if self.xmc is not None:
            record.eval = self.xmc(model)

    def average(self, rounds: list[int], saved: RoundRecord | None = None) -> tuple[SentenceTransformer, RoundRecord]:
        """The uniform average of ``rounds``' models and its record, measured as a round is (dev signals,
        ``eval_data``), unless ``saved`` is the record of the same average."""
        model = average_models([self.model(r) for r in rounds])
        if saved is not None and saved.averaged_rounds == rounds:
            return model, saved
        logger.info("The final model: the average of rounds %s", rounds)
        usage_before = replace(self.teacher.usage)
        record = RoundRecord(round=rounds[-1], averaged_rounds=rounds)
        self.measure(record, model, last=True)
        record.teacher_usage = self.teacher.usage.since(usage_before)
        return model, record

    # ------------------------------------------------------------------ models

    def model(self, r: int) -> SentenceTransformer:
        """A fresh copy of round ``r``'s model from disk (round 0: the base model)."""
        if r == 0:
            return load_saved_model(
                self.work_dir / BASE_MODEL_DIR,
                self.device,
                self.args.max_seq_length,
                recovery=f"delete {self.work_dir / BASE_MODEL_DIR}: fit saves it again",
            )
        return RoundFolder(self.work_dir, r).load_model(self.device, self.args.max_seq_length)


def pseudo_label_precision(pseudo: PseudoLabels, positives: str, train_docs: DocumentSet) -> dict[str, float]:
    """Against ground truth (evaluation only): the share of trained positives that are true labels (a document's
    candidates each weigh 1 / their number: the expected share of its draws), and the share of "yes" labels that
    are."""
    truth = [set(t) for t in train_docs.targets]
    trained = [
        sum(c.label in truth[d.doc] for c in candidates) / len(candidates)
        for d, candidates in usable_documents(pseudo, positives)
    ]
    yes = [j.label in truth[d.doc] for d in pseudo.docs for j in d.yes]
    return {
        "trained_positive_precision": sum(trained) / max(len(trained), 1),
        "yes_precision": sum(yes) / max(len(yes), 1),
    }
