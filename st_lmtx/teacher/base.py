"""The teacher interface: judge (document, label) pairs, through a persistent cache.

A teacher returns, for every pair, a verdict ("yes", "no" or "unparseable") and a score in [0, 1]: p(yes)
where the backend gives probabilities, else 1.0 for "yes" and 0.0 otherwise. Subclasses implement
`Teacher._judge_documents` for the pairs that are not cached; this class looks up the cache, stores
every answer the moment it arrives, counts usage and enforces the budget (`TeacherBudget`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from tqdm.auto import tqdm

from st_lmtx.errors import TeacherBudgetExceeded, TeacherError
from st_lmtx.teacher.budget import TeacherBudget, format_seconds
from st_lmtx.teacher.cache import JudgmentCache
from st_lmtx.teacher.injection import looks_like_instructions
from st_lmtx.teacher.judgments import ImportReport, export_judgments, import_judgments
from st_lmtx.teacher.prompts import Verdict

logger = logging.getLogger(__name__)


@dataclass
class Judgment:
    label: str
    verdict: Verdict
    score: float
    graded: bool = False
    answer: str | None = None
    cached: bool = False

    @property
    def is_yes(self) -> bool:
        return self.verdict == "yes"


@dataclass
class TeacherUsage:
    pairs: int = 0  # judged pairs, cache hits included
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cache_hits: int = 0
    cached_seconds: float = 0.0  # what the answers served from the cache cost the teacher when they were produced
    retries: int = 0
    yes: int = 0
    unparseable: int = 0
    # Documents that seem to address the judge (st_lmtx.teacher.injection), and documents it said "yes" to for
    # every one of their labels (3 or more): both worth a look when the teacher is an LLM reading untrusted text.
    instruction_like_docs: int = 0
    all_yes_docs: int = 0
    # Documents the in-process teacher did not evaluate again: their KV state came from its document memory.
    restored_docs: int = 0

    def since(self, before: TeacherUsage) -> TeacherUsage:
        """What was done after ``before`` (an earlier copy of these totals)."""
        return TeacherUsage(**{k: v - getattr(before, k) for k, v in asdict(self).items()})

    def add(self, other: TeacherUsage) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JudgeResult:
    """``judgments[i][j]`` judges ``candidates[i][j]`` for document ``i``. ``stopped``: the call reached its
    ``stop_at`` (or the budget) first, and the pairs it did not judge are ``None``."""

    judgments: list[list[Judgment | None]]
    usage: TeacherUsage = field(default_factory=TeacherUsage)
    stopped: bool = False


@dataclass
class PendingDocument:
    """One document's pairs that the backend must judge; ``positions`` index into its candidate list."""

    index: int
    doc: str
    labels: list[str]
    positions: list[int]


@dataclass
class Answered:
    """A pair's answer as a backend hands it over: the document, the position in its ``labels``, the judgment,
    and the tokens its call cost (booked on one pair of a call, so that cache totals add up to the calls')."""

    item: PendingDocument
    position: int
    judgment: Judgment
    prompt_tokens: int = 0
    completion_tokens: int = 0


# emit(answers that arrived together): stored in one transaction, before anything else happens to them.
Emit = Callable[[list[Answered]], None]


@dataclass
class _Call:
    """One `Teacher.judge` call under way: its answers so far, what is left to ask, and what each answer cost."""

    results: list[list[Judgment | None]]
    run: TeacherUsage = field(default_factory=TeacherUsage)
    pending: list[PendingDocument] = field(default_factory=list)
    repeats: list[tuple[int, int, int, int]] = field(default_factory=list)  # (i, j) takes (first i, first j)'s answer
    hits: int = 0
    total: int = 0  # pairs to ask
    paid: dict[tuple[int, int], float] = field(default_factory=dict)  # the seconds booked to each answer
    bar: Any = None
    last: float = 0.0  # when the previous answers arrived
    lock: threading.Lock = field(default_factory=threading.Lock)


def _stored(judgment: Judgment) -> tuple:
    return judgment.verdict, judgment.score, judgment.graded, judgment.answer


class Teacher(ABC):
    """Base class of all teachers. ``cache``: a `JudgmentCache`, a path of a SQLite file, or None
    (answers kept in memory only). ``budget``: a `TeacherBudget` (or its text, ``"20000"``, ``"3M-tokens"``,
    ``"2h"``) over the teacher's lifetime plus ``spent_before``; a call that would pass it is not made, and
    `judge` raises `TeacherBudgetExceeded` (answers so far are cached)."""

    backend: str = "base"

    def __init__(
        self,
        cache: JudgmentCache | str | os.PathLike | None = None,
        budget: TeacherBudget | str | float | None = None,
        show_progress_bar: bool = True,
    ) -> None:
        if cache is None or isinstance(cache, JudgmentCache):
            self.cache = cache or JudgmentCache(":memory:")
        else:
            self.cache = JudgmentCache(cache)
        self.budget = TeacherBudget.parse(budget) if budget is not None else None
        self.spent_before = 0.0  # of the budget, before this object (a resumed run's earlier invocations)
        self._stop_at: float | None = None
        self._started = 0.0
        self.show_progress_bar = show_progress_bar
        self.usage = TeacherUsage()  # lifetime totals, for the budget and the model card
        self._namespace: str | None = None

    @property
    @abstractmethod
    def model_name(self) -> str:
        """The name of the judging model, for caches and model cards (never a URL or a key)."""

    @property
    def graded(self) -> bool:
        """Whether this teacher's scores are probabilities (else 1/0 from the verdict)."""
        return False

    @property
    def ungraded_reason(self) -> str | None:
        """Why this teacher's scores are not probabilities although it was asked for them, else None."""
        return None

    def config(self) -> dict[str, Any]:
        """What decides the answers: the cache namespace is derived from it. Never a URL or a key."""
        return {"backend": self.backend, "model": self.model_name}

    def document_view(self, doc: str) -> str:
        """The text this teacher judges for ``doc``, which its cache keys hash: an LLM teacher's prompt drops
        the sentences that address the judge (``PromptTemplate.drop_instructions``); others judge ``doc``."""
        prompt = getattr(self, "prompt", None)
        return prompt.view(doc) if prompt is not None else doc

    @property
    def namespace(self) -> str:
        if self._namespace is None:
            self._namespace = self.cache.register(self.config())
        return self._namespace

    def judge(
        self,
        documents: Sequence[str],
        candidates: Sequence[Sequence[str]],
        desc: str = "Teacher",
        stop_at: float | None = None,
    ) -> JudgeResult:
        """Judge ``candidates[i]`` (label texts) for ``documents[i]``; cached pairs are not asked again.

        ``stop_at``: stop asking once the budget's spending (``spent_before`` included) would pass this amount,
        and return what was judged (``JudgeResult.stopped``, ``None`` for the rest) instead of raising."""
        if len(documents) != len(candidates):
            raise ValueError(f"{len(documents)} documents but {len(candidates)} candidate lists")
        if stop_at is not None and self.budget is None:
            raise ValueError("stop_at needs a teacher budget")
        call = self._look_up(documents, candidates)
        self._announce(call, desc, stop_at)
        stopped = False
        call.last = started = self._started = time.perf_counter()
        self._stop_at = stop_at
        try:
            if call.pending:
                self._judge_documents(call.pending, lambda answers: self._store(call, answers), call.run)
        except TeacherBudgetExceeded:
            if stop_at is None:
                raise
            stopped = True
        finally:
            self._stop_at = None
            call.bar.close()
            call.run.seconds = time.perf_counter() - started
            self._count(call, documents)
        missing = sum(j is None for row in call.results for j in row)
        if missing and not stopped:  # a backend that returns without judging everything is a bug, not a result
            raise TeacherError(f"the teacher left {missing} pairs unjudged")
        return JudgeResult(judgments=call.results, usage=call.run, stopped=stopped)

    def _look_up(self, documents: Sequence[str], candidates: Sequence[Sequence[str]]) -> _Call:
        """The call's cache hits, and the pairs left to ask, a `PendingDocument` a document. A pair asked twice in
        one call (a repeated document, a repeated candidate) is asked once: the repeats take the first one's
        answer, as a cache hit."""
        call = _Call([[None] * len(c) for c in candidates])
        first: dict[tuple[str, str], tuple[int, int]] = {}
        for i, (raw, labels) in enumerate(zip(documents, candidates)):
            doc = self.document_view(raw)
            positions = []
            cached = self.cache.get_many(self.namespace, doc, labels)
            for j, label in enumerate(labels):
                hit = cached.get(label)
                if hit is not None and (hit.graded or not self.graded):
                    call.results[i][j] = Judgment(label, hit.verdict, hit.score, hit.graded, hit.answer, cached=True)
                    call.hits += 1
                    call.run.cached_seconds += hit.seconds
                elif (doc, label) in first:
                    call.repeats.append((i, j, *first[doc, label]))
                else:
                    first[doc, label] = (i, j)
                    positions.append(j)
            if positions:
                call.pending.append(PendingDocument(i, doc, list(labels), positions))
        return call

    def _announce(self, call: _Call, desc: str, stop_at: float | None) -> None:
        """Log what the call will ask and start its progress bar. Under a budget's stop, the bar counts to the pairs
        the budget should pay for at the cost per pair so far, so the time it says is left is the budget's."""
        call.total = total = sum(len(p.positions) for p in call.pending)
        affordable = total if stop_at is None else min(total, self.affordable_pairs(stop_at))
        if total:
            rate = self.pairs_per_second()
            logger.info(
                "%s: %d pairs to judge (%d from the cache)%s%s",
                desc,
                total,
                call.hits + len(call.repeats),
                f", the budget pays for about {affordable}" if affordable < total else "",
                f", about {format_seconds(affordable / rate)} at the {rate:.1f} pairs/s measured so far"
                if rate
                else "",
            )
        call.bar = tqdm(total=affordable, desc=desc, unit="pair", disable=not self.show_progress_bar or not total)

    def _store(self, call: _Call, answers: list[Answered]) -> None:
        """A backend's answers that arrived together (the `Emit` it is given): stored in one transaction before
        anything else happens, so a crash right after loses nothing already answered. Each is booked its share of
        the wall time since the previous ones, so the stored costs of a call's answers add up to the time it took,
        and a resumed run or an import can still tell what its answers cost."""
        with call.lock:
            now = time.perf_counter()
            seconds, call.last = (now - call.last) / max(len(answers), 1), now
        rows = [
            (
                a.item.doc,
                a.item.labels[a.position],
                *_stored(a.judgment),
                a.prompt_tokens,
                a.completion_tokens,
                seconds,
            )
            for a in answers
        ]
        self.cache.put_many(self.namespace, rows)
        for a in answers:
            call.results[a.item.index][a.position] = a.judgment
            call.paid[a.item.index, a.position] = seconds
        call.run.pairs += len(answers)  # cache hits are added at the end: until then, pairs are what the budget paid
        bar = call.bar
        if bar.n + len(answers) > bar.total:  # the budget paid for more than estimated
            bar.total = min(call.total, bar.n + len(answers))
        bar.update(len(answers))
        if self.budget is not None:
            spent = self.spent_now(call.run)
            bar.set_postfix_str(f"budget {self.budget.format(spent)} of {self.budget}", refresh=False)

    def _count(self, call: _Call, documents: Sequence[str]) -> None:
        """The repeats take their first pair's answer; the call's usage is totalled and added to the lifetime's."""
        run, results = call.run, call.results
        for i, j, fi, fj in call.repeats:
            if results[fi][fj] is not None:
                results[i][j] = replace(results[fi][fj], cached=True)
                call.hits += 1
                run.cached_seconds += call.paid[fi, fj]
        run.pairs += call.hits
        run.cache_hits += call.hits
        for doc, row in zip(documents, results):
            for judgment in row:
                if judgment is not None:
                    run.yes += judgment.verdict == "yes"
                    run.unparseable += judgment.verdict == "unparseable"
            run.instruction_like_docs += looks_like_instructions(doc)
            run.all_yes_docs += len(row) >= 3 and all(j is not None and j.verdict == "yes" for j in row)
        self.usage.add(run)

    def pairs_per_second(self) -> float | None:
        """The rate at which this teacher has judged new pairs (after 20 of them), else the rate the cached answers
        it served cost when they were made; None before either is known."""
        usage = self.usage
        judged = usage.pairs - usage.cache_hits
        if judged >= 20 and usage.seconds > 0:
            return judged / usage.seconds
        if usage.cache_hits >= 20 and usage.cached_seconds > 0:
            return usage.cache_hits / usage.cached_seconds
        return None

    def use_budget(self, budget: TeacherBudget | str | float | None, spent_before: float = 0.0) -> None:
        """Judge under ``budget`` from now on, ``spent_before`` of it already spent elsewhere (a resumed run's
        earlier invocations): the one place a teacher's budget state is set after it is built."""
        self.budget = TeacherBudget.parse(budget) if budget is not None else None
        self.spent_before = spent_before

    def spent_now(self, run: TeacherUsage | None = None) -> float:
        """The budget spent so far: before this object, in its finished calls, and in ``run`` (a call under way,
        whose seconds are still running)."""
        budget = self.budget
        if budget is None:
            return 0.0
        spent = self.spent_before + budget.spent(self.usage)
        if run is not None:
            spent += time.perf_counter() - self._started if budget.unit == "seconds" else budget.spent(run)
        return spent

    def per_pair(self, run: TeacherUsage | None = None) -> float:
        """What a new pair has cost of the budget so far, on average (1 for a pair budget; 0 before any)."""
        budget = self.budget
        if budget is None or budget.unit == "pairs":
            return 1.0
        judged = self.usage.pairs - self.usage.cache_hits + (run.pairs if run is not None else 0)
        return (self.spent_now(run) - self.spent_before) / judged if judged else 0.0

    def affordable_pairs(self, stop_at: float) -> int:
        """About how many new pairs fit before the spending reaches ``stop_at`` (all of them before a cost is
        known)."""
        per_pair = self.per_pair()
        if not per_pair:
            return sys.maxsize
        return max(0, int((min(stop_at, self.budget.amount) - self.spent_now()) / per_pair))

    def pairs_that_fit(self, run: TeacherUsage, in_flight: int = 0) -> int:
        """How many more pairs fit in the budget (and the call's ``stop_at``), with ``in_flight`` pairs asked and
        not answered yet, at the cost per pair paid so far (all of them without a budget)."""
        budget = self.budget
        if budget is None:
            return sys.maxsize
        limit = budget.amount if self._stop_at is None else min(budget.amount, self._stop_at)
        spent, per_pair = self.spent_now(run), self.per_pair(run)
        if spent >= limit:
            return 0
        return sys.maxsize if not per_pair else max(0, int((limit - spent) / per_pair + 1e-9) - in_flight)

    def check_budget(self, run: TeacherUsage, in_flight: int = 0, next_pairs: int = 1) -> None:
        """Raise `TeacherBudgetExceeded` unless ``next_pairs`` more pairs, with ``in_flight`` pairs asked and not
        answered yet, fit in the budget (and the call's ``stop_at``), at the cost per pair paid so far."""
        if self.pairs_that_fit(run, in_flight) < next_pairs:
            budget = self.budget
            limit = budget.amount if self._stop_at is None else min(budget.amount, self._stop_at)
            raise TeacherBudgetExceeded(
                f"the teacher's budget of {budget} is spent ({budget.format(self.spent_now(run))}, stopping at "
                f"{budget.format(limit)}); answers so far are cached: run again with a larger budget to go on"
            )

    @abstractmethod
    def _judge_documents(self, pending: list[PendingDocument], emit: Emit, run: TeacherUsage) -> None:
        """Judge every ``(item, j) for j in item.positions``, calling ``emit`` once per pair as soon as its
        answer is known, and count calls and tokens in ``run``."""

    def export_judgments(self, path: str | os.PathLike) -> int:
        """Write this teacher's cached answers to a judgments file (see `st_lmtx.teacher.judgments`)."""
        return export_judgments(self.cache, path, namespace=self.namespace)

    def import_judgments(self, path: str | os.PathLike) -> ImportReport:
        """Add a judgments file's answers to this teacher's cache, so they are not asked again. The file must
        hold this teacher's answers (same model, prompt and mode) and pass its checks, else nothing is added."""
        return import_judgments(self.cache, path, namespace=self.namespace, config=self.config())

    def close(self) -> None:
        """Release the backend (servers, models); the cache stays open."""

    def __enter__(self) -> Teacher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        """For model cards and logs: what judged, with no secret."""
        described = {"backend": self.backend, "model": self.model_name, "graded": self.graded}
        prompt = getattr(self, "prompt", None)
        if prompt is not None:
            described["drop_instructions"] = prompt.drop_instructions
        return described
