"""RunState: a run's `RunRecord` in ``lmtx-work/state.json``, saved after every round, and the stop rule.

A ``fit`` on the same folder reads it and continues after the last finished round; a folder that holds a run with
other documents, labels, base model, teacher or run-defining settings is refused.
"""

from __future__ import annotations

import json
import logging
import math
import random
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import filelock

from st_lmtx.arguments import LMTXArguments
from st_lmtx.errors import RunFileError, RunInUseError, RunMismatchError
from st_lmtx.layout import LOCK_FILE, ROUND_DIRS, STATE_FILE
from st_lmtx.trainer.records import RoundRecord, RunRecord
from st_lmtx.trainer.round_files import RoundFolder
from st_lmtx.trainer.spending import BUDGET_SPENT

logger = logging.getLogger(__name__)

# Held by the process that runs in the folder (an OS lock: it goes with the process, however that ends).
# How many standard errors apart two rounds' dev signals must be for the final model to leave the lower one out.
SEPARATED = 2.0


class RunState:
    """The run's record on disk and the stop rule applied to it."""

    def __init__(self, path: Path, record: RunRecord) -> None:
        self.path, self.record = path, record

    @property
    def rounds(self) -> list[RoundRecord]:
        return self.record.rounds

    @property
    def next_round(self) -> int:
        return len(self.record.rounds)

    @classmethod
    def open(cls, work_dir: Path, new: RunRecord, args: LMTXArguments, num_documents: int) -> RunState:
        """The folder's state if it holds this run (else a `RunMismatchError`), or ``new`` with its document
        samples drawn, for a new run."""
        path = work_dir / STATE_FILE
        new.fingerprint = json.loads(json.dumps(new.fingerprint))  # tuples -> lists, as read back from JSON
        if path.exists():
            state = cls(path, cls.read(path))
            state._check_same_run(new.fingerprint)
            state._drop_rounds_without_model(work_dir)
            record = state.record
            reason = record.stop_reason or ""
            if record.finished and (
                (len(record.rounds) - 1 < args.max_rounds and "max_rounds" in reason)
                or (args.teacher_budget and reason.startswith(BUDGET_SPENT))
            ):
                # A larger max_rounds continues a run that stopped on the cap; a budget (larger, or the run stops
                # again at once) one that stopped on its budget.
                record.finished = False
            # Settings that do not define the run (max_rounds, patience, ...) may change between invocations.
            record.args, record.stop_metric = new.args, new.stop_metric
            logger.info("Resuming %s after round %d", work_dir.parent, len(record.rounds) - 1)
            return state
        stale = sorted(work_dir.glob(ROUND_DIRS))
        if stale:
            # Round folders without a state are a run whose state.json was deleted: its files may come from other
            # settings, so they are redone (the teacher's answers are cached, so that costs training only).
            logger.warning("%s has round folders but no %s: starting the run over", work_dir, STATE_FILE)
            for folder in stale:
                RoundFolder.remove(folder)
        new.train_indices, new.dev_documents = sample_documents(num_documents, args)
        state = cls(path, new)
        state.save()
        return state

    @staticmethod
    def read(path: Path) -> RunRecord:
        try:
            return RunRecord.read(path)
        except RunFileError as e:
            raise RunFileError(
                f"{e}. Each finished round's record is also in {path.parent}/round-NN/metrics.json. To go on, delete "
                f"{path.name}: the run starts over and redoes its rounds, and the teacher's cached answers make that "
                "cost training time only."
            ) from e

    def save(self) -> None:
        self.record.write(self.path)

    def add_round(self, record: RoundRecord, patience: int) -> None:
        """Add a finished round and apply the stop rule: ``patience`` rounds without a better stop metric."""
        self.record.rounds.append(record)
        self.record.final = None  # of other rounds
        self.record.best_round = self.best()
        since_best = record.round - self.record.best_round
        if since_best >= patience:
            self.finish(f"{self.record.stop_metric} on the dev sample did not improve for {since_best} round(s)")

    def finish(self, reason: str) -> None:
        self.record.finished, self.record.stop_reason = True, reason

    def best(self) -> int:
        """The trained round with the highest stop metric (ties go to the earlier round, as the reference stops
        on "not better"); 0 before any round is trained."""
        trained = self.record.trained_rounds
        if not trained:
            return 0
        metric = self.record.stop_metric
        # A round whose dev judging a budget cut short before any document was measured has no signal: last.
        return max(trained, key=lambda r: (r.dev.get(metric, -math.inf), -r.round)).round

    def rounds_to_average(self) -> list[int]:
        """The rounds whose average is the final model (``average_rounds``): the kept round and every trained round
        the dev sample cannot tell apart from it.

        A round is told apart when its stop metric, compared with the kept round's document by document, is lower
        by more than `SEPARATED` standard errors of the mean paired difference. A judge under which the rounds
        keep improving leaves the early rounds out; with a noisy judge, whose rounds differ by their seeds more
        than by what it can see, every round stays in.
        """
        record, metric = self.record, self.record.stop_metric
        kept_round = next((r for r in record.trained_rounds if r.round == record.best_round), None)
        if kept_round is None:  # no round trained (a budget spent on round 0)
            return []
        kept = kept_round.dev_values.get(metric)
        return [r.round for r in record.trained_rounds if not worse(r.dev_values.get(metric), kept)]

    def _check_same_run(self, fingerprint: dict[str, Any]) -> None:
        stored = self.record.fingerprint
        if stored != fingerprint:
            changed = [k for k in fingerprint if k != "args" and stored.get(k) != fingerprint[k]]
            stored_args = stored.get("args", {})
            # With the values: a default that differs (shortlist_k under a budget) can then be given explicitly.
            changed += [
                f"args ({n}: {stored_args.get(n)!r} there, {v!r} now)"
                for n, v in fingerprint["args"].items()
                if stored_args.get(n) != v
            ]
            raise RunMismatchError(
                f"{self.path.parent.parent} holds a run with different {', '.join(changed) or 'settings'}: use "
                "another output folder, give the same settings, or delete this one to start over"
            )

    def _drop_rounds_without_model(self, work_dir: Path) -> None:
        # A recorded round whose model folder is gone (deleted to recover from a broken model) is redone, and so
        # is every round after it, which was trained from it.
        for i, record in enumerate(self.record.rounds):
            folder = RoundFolder(work_dir, record.round)
            if record.round > 0 and not folder.has_model():
                logger.warning("%s has no model: the run resumes after round %d", folder.path, record.round - 1)
                self.record.rounds = self.record.rounds[:i]
                self.record.best_round = self.best() if len(self.record.rounds) > 1 else None
                self.record.finished, self.record.stop_reason, self.record.final = False, None, None
                return


@contextmanager
def hold_run_folder(work_dir: Path) -> Iterator[None]:
    """This process's hold on a run folder: a second process pointed at it while this one runs (both would write
    its state and round folders) gets a `RunInUseError` at once, before it writes anything."""
    work_dir.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(work_dir / LOCK_FILE)
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise RunInUseError(
            f"{work_dir.parent} is in use by another st-lmtx run: wait for it to end (a rerun then resumes), or "
            "give this one another output folder"
        ) from None
    try:
        yield
    finally:
        lock.release()


def worse(values: list[float] | None, than: list[float] | None, separated: float = SEPARATED) -> bool:
    """Whether per-document ``values`` are lower than ``than`` (the same documents, in the same order) by more
    than ``separated`` standard errors of the mean paired difference; False when they cannot be paired."""
    if not values or not than or len(values) != len(than) or len(values) < 2:
        return False
    differences = [b - a for a, b in zip(values, than)]
    mean = statistics.fmean(differences)
    return mean > separated * statistics.stdev(differences) / math.sqrt(len(differences))


def sample_documents(num_documents: int, args: LMTXArguments) -> tuple[list[int], list[int]]:
    """The run's training documents and dev documents, as sorted indices into the documents given to ``fit``.

    Training: ``max_docs`` documents drawn at random (all of them without ``max_docs``). Dev (``dev_size``): with
    ``held_out_dev``, among the other documents, from those beyond ``max_docs`` when there are enough, else taken
    out of training, never more than a fifth of the documents; else among the training documents. When the
    documents beyond ``max_docs`` hold the dev sample, the training sample is the same either way.
    """
    rng = random.Random(args.seed)
    everything = list(range(num_documents))
    wanted = min(args.max_docs or num_documents, num_documents)
    held_out = min(args.dev_size, max(num_documents // 5, num_documents - wanted)) if args.held_out_dev else 0
    size = min(wanted, num_documents - held_out)
    train = sorted(rng.sample(everything, size)) if size < num_documents else everything
    if args.held_out_dev:
        in_training = set(train)
        return train, sorted(rng.sample([i for i in everything if i not in in_training], held_out))
    return train, [train[i] for i in sorted(rng.sample(range(len(train)), min(args.dev_size, len(train))))]
