"""RunSpending: what a run's teacher has cost over every invocation, the run's budget, and its plan.

The spending is kept in the run's record (`RunRecord.teacher_spent`), saved with it after every round and when
an invocation fails or is interrupted, so a resumed run counts what it already paid. With a budget
(`LMTXArguments.teacher_budget`) the run spends it by one rule (`RULE`):

1. each document's top-3 labels are judged (`LMTXArguments.shortlist_k` defaults to 3 with a budget);
2. the first dev judging may take at most `DEV_SHARE` of the budget: the dev documents it reaches are the sample;
3. what is left, less the last dev judging's cost, is shared evenly by the rounds up to `PLANNED_ROUNDS`;
4. a round judges its documents in order until its share is spent: the documents an earlier round judged come
   first, so the next ones join the run as the budget allows, and the rest sit the round out;
5. from round 2 a settled document (its top-1 is a label the teacher already said "yes" to) is not asked again.

The run ends when what is left cannot pay for one more document's shortlist.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace

from st_lmtx.arguments import LMTXArguments
from st_lmtx.errors import ArgumentsError
from st_lmtx.teacher.base import Teacher, TeacherUsage
from st_lmtx.teacher.budget import TeacherBudget, format_seconds
from st_lmtx.trainer.records import RoundRecord, RunRecord

logger = logging.getLogger(__name__)

# How a run that its budget ended says so (`RunRecord.stop_reason`); a rerun with a budget goes on after it.
BUDGET_SPENT = "the teacher budget is spent"
# The dev sample measures the rounds, it does not teach: its first judging gets at most this share of a budget.
DEV_SHARE = 0.15
# The rounds a budget is shared by: the stop rule ends most runs by the third (BENCHMARKS.md); later rounds, if
# any, spend what is left.
PLANNED_ROUNDS = 3


def spending_rule(shortlist_k: int) -> str:
    """The budget's rule in a sentence, for the plan and the model card (``shortlist_k``: the run's own)."""
    return (
        f"top-{shortlist_k} labels a document; the dev sample's first judging at most {DEV_SHARE:.0%} of the "
        f"budget; the rest shared by the first {PLANNED_ROUNDS} rounds, each judging documents in order (earlier "
        "ones first, then new ones) until its share is spent; settled documents (top-1 already a 'yes') not asked "
        "again"
    )


class RunSpending:
    """The run's teacher spending (``record.teacher_spent`` when the invocation began, plus what ``teacher`` has
    done since) and its budget, which it hands to the teacher."""

    def __init__(self, teacher: Teacher, record: RunRecord, args: LMTXArguments) -> None:
        self.teacher, self.args = teacher, args
        self.before = replace(record.teacher_spent)
        self.usage_at_start = replace(teacher.usage)
        self.budget = TeacherBudget.parse(args.teacher_budget) if args.teacher_budget else None
        if self.budget is not None:
            least = math.ceil(args.shortlist_k / DEV_SHARE)
            if self.budget.unit == "pairs" and self.budget.amount < least:
                raise ArgumentsError(
                    f"a budget of {self.budget} is too small: its dev share ({DEV_SHARE:.0%}) must pay for one "
                    f"document's top-{args.shortlist_k}, so give at least {least} pairs"
                )
            # The teacher counts its own usage: what earlier invocations spent is added to it.
            teacher.use_budget(self.budget, self.budget.spent(self.before) - self.budget.spent(teacher.usage))

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
            text += f" Budget: {self.budget}, {self.budget.format(self.spent())} spent; {spending_rule(k)}."
        return text

    @property
    def settles(self) -> bool:
        """Whether rounds leave settled documents alone (under a budget)."""
        return self.budget is not None

    def dev_stop_at(self) -> float | None:
        """Where the first dev judging stops (None: no budget): `DEV_SHARE` of the budget."""
        if self.budget is None:
            return None
        return self.spent() + DEV_SHARE * self.budget.amount

    def stop_at(self, rounds: list[RoundRecord]) -> tuple[float | None, str | None]:
        """The spending at which round ``len(rounds)``'s judging stops (None: no budget), or why the run cannot pay
        for another round: the round's share of what is left once the last dev judging's cost is kept back for
        its own (a dev judging the budget cannot pay in full measures the documents it reached)."""
        budget = self.budget
        if budget is None:
            return None, None
        last_dev = rounds[-1].dev_teacher_usage if rounds else None
        reserve = budget.spent(last_dev) if last_dev is not None else 0.0
        total = self.total()
        spent = budget.spent(total)
        left = budget.amount - reserve - spent
        judged = total.pairs - total.cache_hits
        per_pair = 1.0 if budget.unit == "pairs" else (spent / judged if judged else 0.0)
        if left < per_pair * self.args.shortlist_k:
            return None, self.spent_reason()
        rounds_left = max(1, min(PLANNED_ROUNDS, self.args.max_rounds) - len(rounds) + 1)
        return spent + left / rounds_left, None

    def estimate(self) -> str | None:
        """How long the rest of the budget should take the teacher, at the rate it has spent so far (None: no
        budget, or nothing spent yet)."""
        budget, total = self.budget, self.total()
        spent = self.spent()
        if budget is None or not spent or total.seconds <= 0:
            return None
        left = max(0.0, budget.amount - spent)
        return (
            f"{budget.format(spent)} spent in {format_seconds(total.seconds)} of judging; the rest, "
            f"{budget.format(left)}, should take about {format_seconds(left * total.seconds / spent)} more"
        )

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
