"""RunSpending: what a run's teacher has cost over every invocation, the run's budget, and its plan.

The spending is kept in the run's record (`RunRecord.teacher_spent`), saved with it after every round and when
an invocation fails or is interrupted, so a resumed run counts what it already paid. With a budget
(`LMTXArguments.teacher_budget`), rounds judge in their shortlists' order until what is left would not also pay
for the round's dev judging (as much as the last one cost); the documents not reached train on what earlier rounds
judged, or sit the round out, and the run ends after it with the rounds it could pay for.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from st_lmtx.arguments import LMTXArguments
from st_lmtx.errors import ArgumentsError
from st_lmtx.teacher.base import Teacher, TeacherUsage
from st_lmtx.teacher.budget import TeacherBudget, format_seconds
from st_lmtx.trainer.records import RoundRecord, RunRecord

logger = logging.getLogger(__name__)

# How a run that its budget ended says so (`RunRecord.stop_reason`); a rerun with a budget goes on after it.
BUDGET_SPENT = "the teacher budget is spent"


class RunSpending:
    """The run's teacher spending (``record.teacher_spent`` when the invocation began, plus what ``teacher`` has
    done since) and its budget, which it hands to the teacher."""

    def __init__(self, teacher: Teacher, record: RunRecord, args: LMTXArguments) -> None:
        self.teacher, self.args = teacher, args
        self.before = replace(record.teacher_spent)
        self.usage_at_start = replace(teacher.usage)
        self.budget = TeacherBudget.parse(args.teacher_budget) if args.teacher_budget else None
        if self.budget is not None:
            if self.budget.unit == "pairs" and self.budget.amount < args.shortlist_k:
                raise ArgumentsError(
                    f"a budget of {self.budget} is smaller than one document's shortlist ({args.shortlist_k} pairs)"
                )
            teacher.budget = self.budget
            # The teacher counts its own usage: what earlier invocations spent is added to it.
            teacher.spent_before = self.budget.spent(self.before) - self.budget.spent(teacher.usage)

    def total(self) -> TeacherUsage:
        """Everything the run's teacher has done, in every invocation so far."""
        total = replace(self.before)
        total.add(self.teacher.usage.since(self.usage_at_start))
        return total

    def save_into(self, record: RunRecord) -> None:
        record.teacher_spent = self.total()

    def spent(self) -> float:
        return self.budget.spent(self.total()) if self.budget is not None else 0.0

    def plan(self, train_documents: int, dev_documents: int) -> str:
        """What the run will ask the teacher, printed before it asks anything."""
        a, k = self.args, self.args.shortlist_k
        held = "held out of training" if a.held_out_dev else "drawn from the training documents"
        text = (
            f"Plan: {train_documents:,} training documents, their top-{k} labels judged in round 1 (at most "
            f"{train_documents * k:,} pairs, fewer when cached), then only the labels new to a document's shortlist, "
            f"for at most {a.max_rounds} rounds; a dev sample of {dev_documents:,} documents {held}, at most "
            f"{dev_documents * k:,} pairs a round."
        )
        if self.budget is not None:
            text += (
                f" Budget: {self.budget}, {self.budget.format(self.spent())} spent; rounds judge in order until what "
                "is left pays only for the dev judging, and the run ends after the round the budget ran out in."
            )
        return text

    def stop_at(self, rounds: list[RoundRecord]) -> tuple[float | None, str | None]:
        """The spending at which the next round's judging stops (None: no budget), or why the run cannot pay for
        another round. What is kept back is the last dev judging's cost, for the round's own; a dev judging the
        budget cannot pay in full measures the documents it reached."""
        budget = self.budget
        if budget is None:
            return None, None
        last_dev = rounds[-1].dev_teacher_usage if rounds else None
        reserve = budget.spent(last_dev) if last_dev is not None else 0.0
        stop_at = budget.amount - reserve
        total = self.total()
        spent = budget.spent(total)
        judged = total.pairs - total.cache_hits
        per_pair = 1.0 if budget.unit == "pairs" else (spent / judged if judged else 0.0)
        if stop_at - spent < per_pair * self.args.shortlist_k:
            return None, self.spent_reason()
        return stop_at, None

    def spent_reason(self) -> str:
        return f"{BUDGET_SPENT} ({self.budget.format(self.spent())} of {self.budget})"

    def summary(self) -> str:
        """One line: what the run's teacher cost (and of what budget)."""
        total = self.total()
        new = total.pairs - total.cache_hits
        text = (
            f"Teacher: {new:,} pairs judged ({total.cache_hits:,} more from the cache), "
            f"{total.prompt_tokens + total.completion_tokens:,} tokens, {format_seconds(total.seconds)} of judging"
        )
        if self.budget is not None:
            text += (
                f"; budget {self.budget}: {self.spent() / self.budget.amount:.0%} spent" if self.budget.amount else ""
            )
        return text
