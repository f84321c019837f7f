"""RunState: what an LMTX run has done so far, persisted in ``lmtx-work/state.json`` after every round.

It holds the run's fingerprint (documents, labels, base model, teacher, run-defining arguments: a resumed run must
match it), the sampled training and dev documents (:func:`sample_documents`), each finished round's record, the
best round and whether the run is finished. A ``fit`` on the same folder reads it and continues after the last
finished round.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from st_lmtx.files import RunFileError, atomic_write_text
from st_lmtx.trainer.arguments import LMTXArguments
from st_lmtx.trainer.round_files import RoundFolder

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"


@dataclass
class RunState:
    path: Path
    fingerprint: dict[str, Any]
    train_indices: list[int]  # the documents given to fit that the run trains on
    dev_documents: list[int]  # the documents given to fit on which the teacher judges each round (the stop rule)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    best_round: int | None = None
    finished: bool = False
    stop_reason: str | None = None
    # The final model's record when it is not a round (``average_rounds``: which rounds it averages, its dev
    # signals and evaluation), so that a resumed run that only has the final folder left to write measures it once.
    final: dict[str, Any] | None = None
    # Which dev signal ranks the rounds: the run's arguments say, each time it is opened (not persisted).
    stop_metric: str = "llm_P@1"
    _fallback_logged: bool = field(default=False, init=False, repr=False, compare=False)

    @property
    def next_round(self) -> int:
        return len(self.rounds)

    @classmethod
    def open(cls, work_dir: Path, fingerprint: dict[str, Any], args: LMTXArguments, num_documents: int) -> RunState:
        """The folder's state if it holds this run (else a clear error), or a new state for a new run."""
        path = work_dir / STATE_FILE
        fingerprint = json.loads(json.dumps(fingerprint))  # tuples -> lists, as read back from JSON
        if path.exists():
            state = cls.read(path)
            state._check_same_run(fingerprint)
            state._drop_rounds_without_model(work_dir)
            if state.finished and len(state.rounds) - 1 < args.max_rounds and "max_rounds" in (state.stop_reason or ""):
                state.finished = False  # a larger max_rounds continues a run that stopped on the cap
            logger.info("Resuming %s after round %d", work_dir.parent, len(state.rounds) - 1)
            state.stop_metric = args.stop_metric
            return state
        stale = sorted(work_dir.glob("round-*"))
        if stale:
            # Round folders without a state are a run whose state.json was deleted: its files may come from other
            # settings, so they are redone (the teacher's answers are cached, so that costs training only).
            logger.warning("%s has round folders but no %s: starting the run over", work_dir, STATE_FILE)
            for folder in stale:
                RoundFolder.remove(folder)
        indices, dev = sample_documents(num_documents, args)
        if args.dev_source == "held-out":
            logger.info("Dev sample: %d documents held out of training (%d training documents); the teacher judges "
                        "their top-%d each round on top of the training shortlists", len(dev), len(indices),
                        args.shortlist_k)  # fmt: skip
        state = cls(path, fingerprint, indices, dev, stop_metric=args.stop_metric)
        state.save()
        return state

    @classmethod
    def read(cls, path: Path) -> RunState:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(path, data["fingerprint"], data["train_indices"], dev_documents(data), data["rounds"],
                       data.get("best_round"), data["finished"], data.get("stop_reason"), data.get("final"))  # fmt: skip
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise RunFileError(
                f"{path} is unreadable ({type(e).__name__}: {e}). Each finished round's record is also in "
                f"{path.parent}/round-NN/metrics.json. To go on, delete {path.name}: the run starts over and redoes "
                "its rounds, and the teacher's cached answers make that cost training time only."
            ) from e

    def save(self) -> None:
        data = {"fingerprint": self.fingerprint, "train_indices": self.train_indices,
                "dev_documents": self.dev_documents, "rounds": self.rounds, "best_round": self.best_round,
                "finished": self.finished, "stop_reason": self.stop_reason, "final": self.final}  # fmt: skip
        atomic_write_text(self.path, json.dumps(data, indent=1))

    def record(self, record: dict[str, Any], patience: int) -> None:
        """Add a finished round and apply the stop rule: ``patience`` rounds without a better ``stop_metric``."""
        self.rounds.append(record)
        self.final = None  # of other rounds
        self.best_round = self.best()
        since_best = record["round"] - self.best_round
        if since_best >= patience:
            self.finish(f"{self._metric()} on the dev sample did not improve for {since_best} round(s)")

    def finish(self, reason: str) -> None:
        self.finished, self.stop_reason = True, reason

    def best(self) -> int:
        trained = [r for r in self.rounds if r["round"] > 0]
        if not trained:
            return 0
        # The highest signal; ties go to the earlier round (the reference stops on "not better").
        metric = self._metric()
        return max(trained, key=lambda r: (r["dev"][metric], -r["round"]))["round"]

    def _metric(self) -> str:
        # Rounds recorded before a signal existed (or judged top-1 only) lack it: rank them all on llm_P@1.
        trained = [r for r in self.rounds if r["round"] > 0]
        if all(self.stop_metric in r["dev"] for r in trained):
            return self.stop_metric
        if not self._fallback_logged:  # once a run, not at every round it ranks
            logger.warning("Some rounds have no %s on record: ranking the rounds on llm_P@1", self.stop_metric)
            self._fallback_logged = True
        return "llm_P@1"

    def _check_same_run(self, fingerprint: dict[str, Any]) -> None:
        # A setting added after the run started matches when it is at its default (as JSON has it: tuples are lists).
        defaults = json.loads(json.dumps(LMTXArguments().run_defining()))
        stored_args = self.fingerprint.setdefault("args", {})
        for name, value in fingerprint["args"].items():
            if name not in stored_args and value == defaults[name]:
                stored_args[name] = value
        if self.fingerprint != fingerprint:
            changed = [k for k in fingerprint if k != "args" and self.fingerprint.get(k) != fingerprint[k]]
            changed += [f"args ({n})" for n, v in fingerprint["args"].items() if stored_args.get(n) != v]
            raise RuntimeError(
                f"{self.path.parent.parent} holds a run with different {', '.join(changed)}; use another output_dir "
                "or delete it"
            )

    def _drop_rounds_without_model(self, work_dir: Path) -> None:
        # A recorded round whose model folder is gone (deleted to recover from a broken model) is redone, and so
        # is every round after it, which was trained from it.
        for i, record in enumerate(self.rounds):
            folder = RoundFolder(work_dir, record["round"])
            if record["round"] > 0 and not folder.has_model():
                logger.warning("%s has no model: the run resumes after round %d", folder.path, record["round"] - 1)
                self.rounds = self.rounds[:i]
                self.best_round = self.best() if len(self.rounds) > 1 else None
                self.finished, self.stop_reason, self.final = False, None, None
                return


def sample_documents(num_documents: int, args: LMTXArguments) -> tuple[list[int], list[int]]:
    """The run's training documents and dev documents, as sorted indices into the documents given to ``fit``.

    Training: ``max_docs`` documents drawn at random (all of them without ``max_docs``). Dev (``dev_size``):
    with ``dev_source="training"`` (the reference) drawn among the training documents; with ``"held-out"``
    among the others, so that no round trains on them: from the documents beyond ``max_docs`` when there are
    enough, else taken out of training, never more than a fifth of the documents. Either way the training sample
    is the one ``dev_source="training"`` draws whenever the documents beyond ``max_docs`` hold the dev sample, so
    runs that differ only in their dev sample train on the same documents (and share the teacher's answers).
    """
    rng = random.Random(args.seed)
    everything = list(range(num_documents))
    wanted = min(args.max_docs or num_documents, num_documents)
    if args.dev_source == "training":
        train = sorted(rng.sample(everything, wanted)) if wanted < num_documents else everything
        return train, [train[i] for i in sorted(rng.sample(range(len(train)), min(args.dev_size, len(train))))]
    held_out = min(args.dev_size, max(num_documents // 5, num_documents - wanted))
    size = min(wanted, num_documents - held_out)
    train = sorted(rng.sample(everything, size)) if size < num_documents else everything
    in_training = set(train)
    rest = [i for i in everything if i not in in_training]
    return train, sorted(rng.sample(rest, held_out))


def dev_documents(data: dict[str, Any]) -> list[int]:
    """The dev documents of a ``state.json`` as read from disk. Files written before held-out dev samples existed
    give them as positions in the training sample (``dev_indices``)."""
    if "dev_documents" in data:
        return data["dev_documents"]
    return [data["train_indices"][i] for i in data["dev_indices"]]
