"""The records of an LMTX run: what each round did (`RoundRecord`) and what the run did (`RunRecord`).

This module alone writes and reads them. ``lmtx-work/state.json`` holds the whole `RunRecord` (a ``fit`` on
the same folder resumes from it); ``lmtx_run.json`` beside the final model holds the same record without the
document samples, and the model card, the command line's summary and the benchmarks read it with
`RunRecord.read`::

    run = RunRecord.read("my-tagger/lmtx_run.json")
    run.final_record.eval["P@1"], [r.dev[run.stop_metric] for r in run.rounds]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from st_lmtx.errors import RunFileError
from st_lmtx.files import atomic_write_text
from st_lmtx.pseudo_labels import PseudoLabelStats
from st_lmtx.teacher.base import TeacherUsage

# The records' format; a file of another version is refused with a message, never half-read.
RECORD_VERSION = 2


@dataclass(frozen=True)
class RoundSchedule:
    """How a round trains: the global batch, the passes over its pairs and the optimiser steps they make."""

    batch_size: int
    epochs: int
    steps: int


@dataclass
class RoundRecord:
    """One round: round 0 is the base model (zero-shot); the final model, when it averages rounds, has a record
    too, with ``averaged_rounds`` set.

    Attributes:
        round: the round (0: the base model; the final model: the last round it averages).
        dev: the teacher's view of the model on the dev sample (``llm_P@1``, ``llm_top1_margin``).
        dev_values: each of those signals per dev document (their mean is ``dev``): what tells two rounds apart
            on the same documents, for the final model's rule.
        eval: ground-truth metrics on ``eval_data`` (P@k, R@k, nDCG@k, PSP@k), when given.
        pseudo_labels: the round's judged shortlists, counted.
        precision: against ground truth, when the training documents have any (evaluation only): the share of
            trained positives (``trained_positive_precision``) and of "yes" answers (``yes_precision``) that are
            true labels.
        training_pairs: rows trained on.
        schedule: batch, passes and steps.
        train_seconds: training time.
        teacher_usage: everything the teacher did in the round, dev judging included.
        dev_teacher_usage: the part of it the dev sample took.
        seconds: the round's wall time.
        warnings: what the round's answers say about the teacher (a strict, lenient or garbled judge).
        averaged_rounds: for the final model: the rounds whose weights it averages.
        budget_reached: the round's share of the teacher budget stopped its judging: the documents it did not
            reach trained on earlier rounds' judgments, or sat the round out.
        settled_documents: under a budget, the documents whose top-1 was already a "yes", not asked again.
    """

    round: int
    dev: dict[str, float] = field(default_factory=dict)
    dev_values: dict[str, list[float]] = field(default_factory=dict)
    eval: dict[str, float] | None = None
    pseudo_labels: PseudoLabelStats | None = None
    precision: dict[str, float] | None = None
    training_pairs: int = 0
    schedule: RoundSchedule | None = None
    train_seconds: float = 0.0
    teacher_usage: TeacherUsage = field(default_factory=TeacherUsage)
    dev_teacher_usage: TeacherUsage | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    averaged_rounds: list[int] | None = None
    budget_reached: bool = False
    settled_documents: int = 0

    def write(self, path: str | Path) -> None:
        """Write the round's record alone (``round-NN/metrics.json``: ``state.json`` holds it too)."""
        atomic_write_text(Path(path), json.dumps(asdict(self) | {"version": RECORD_VERSION}, indent=1))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundRecord:
        data = {k: v for k, v in data.items() if k != "version"}
        for name, kind in (
            ("pseudo_labels", PseudoLabelStats),
            ("schedule", RoundSchedule),
            ("teacher_usage", TeacherUsage),
            ("dev_teacher_usage", TeacherUsage),
        ):
            if data.get(name) is not None:
                data[name] = kind(**data[name])
        return cls(**data)


@dataclass
class RunRecord:
    """A run: its rounds, the round the stop rule keeps, why it stopped, and the final model's record.

    Attributes:
        version: the records' format (`RECORD_VERSION`).
        base_model: the base model's name.
        num_labels: the label set's size.
        teacher: the teacher as `describe` gives it (no endpoint, no key).
        args: the run's `LMTXArguments`, as a dict.
        stop_metric: the dev signal that ranks the rounds.
        rounds: every finished round, round 0 first.
        best_round: the round the stop rule keeps.
        finished: whether the run is over.
        stop_reason: why it stopped.
        final: the final model's record when it averages rounds; ``None`` when it is the kept round's model.
        fingerprint: what a resumed run must match (documents, labels, base model, teacher, run settings).
        train_indices: the documents given to ``fit`` that the run trains on (``state.json`` only).
        dev_documents: those on which the teacher judges each round (``state.json`` only).
        teacher_spent: everything the run's teacher did, over every invocation (what a budget counts).
    """

    base_model: str
    num_labels: int
    teacher: dict[str, Any]
    args: dict[str, Any]
    stop_metric: str
    rounds: list[RoundRecord] = field(default_factory=list)
    best_round: int | None = None
    finished: bool = False
    stop_reason: str | None = None
    final: RoundRecord | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    train_indices: list[int] = field(default_factory=list)
    dev_documents: list[int] = field(default_factory=list)
    teacher_spent: TeacherUsage = field(default_factory=TeacherUsage)
    version: int = RECORD_VERSION

    @property
    def trained_rounds(self) -> list[RoundRecord]:
        return [r for r in self.rounds if r.round > 0]

    @property
    def final_record(self) -> RoundRecord:
        """The record of the model the output folder holds: the average's, or the kept round's."""
        if self.final is not None:
            return self.final
        return next(r for r in self.rounds if r.round == (self.best_round or 0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        data = dict(data)
        data["rounds"] = [RoundRecord.from_dict(r) for r in data["rounds"]]
        if data.get("final") is not None:
            data["final"] = RoundRecord.from_dict(data["final"])
        if data.get("teacher_spent") is not None:
            data["teacher_spent"] = TeacherUsage(**data["teacher_spent"])
        return cls(**data)

    def write(self, path: str | Path) -> None:
        """Write the record atomically (a crash leaves the old file or the new one)."""
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=1))

    def write_summary(self, path: str | Path) -> None:
        """Write the record without the document samples (``lmtx_run.json``, published with the model)."""
        replace(self, train_indices=[], dev_documents=[]).write(path)

    @classmethod
    def read(cls, path: str | Path) -> RunRecord:
        """Read a record; a file that is unreadable, of another version or malformed is a `RunFileError`
        naming it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != RECORD_VERSION:
                raise ValueError(f"record version {data.get('version')!r}, this st-lmtx reads {RECORD_VERSION}")
            return cls.from_dict(data)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise RunFileError(f"{path} is not a readable LMTX run record ({type(e).__name__}: {e})") from e
