"""TeacherBudget: how much a teacher may spend, in new judged pairs, evaluated tokens or seconds of judging.

Written as text on the command line (``--teacher-budget``) and in `LMTXArguments.teacher_budget`::

    TeacherBudget.parse("20000")       # 20,000 new pairs (cached answers are free)
    TeacherBudget.parse("20k")         # the same
    TeacherBudget.parse("3M-tokens")   # 3,000,000 evaluated tokens (prompt and answer)
    TeacherBudget.parse("2h")          # two hours of judging; also "45m", "90s", "1h30m"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from st_lmtx.errors import ArgumentsError

UNITS = ("pairs", "tokens", "seconds")
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}
_NUMBER = r"(\d+(?:\.\d+)?)([km]?)"
_TIME = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?")


@dataclass(frozen=True)
class TeacherBudget:
    """``amount`` of ``unit`` (`UNITS`): new judged pairs, evaluated tokens, or seconds the teacher judges."""

    amount: float
    unit: str = "pairs"

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ArgumentsError(f"a budget's unit is one of {', '.join(UNITS)}; got {self.unit!r}")
        if self.amount < 0:
            raise ArgumentsError(f"a budget cannot be negative; got {self.amount}")

    @classmethod
    def parse(cls, value: str | float | TeacherBudget) -> TeacherBudget:
        """A budget from its text: ``20000`` or ``20k`` pairs, ``3M-tokens``, ``2h`` / ``45m`` / ``1h30m``."""
        if isinstance(value, TeacherBudget):
            return value
        if isinstance(value, (int, float)):
            return cls(float(value))
        text = str(value).strip().lower().replace(",", "").replace("_", "")
        # "45m" alone is minutes; "3m-tokens" or "3m pairs" millions.
        number = re.fullmatch(_NUMBER + r"[- ]?(pairs|tokens)", text) or re.fullmatch(r"(\d+(?:\.\d+)?)(k?)()", text)
        if number:
            amount, scale, unit = number.groups()
            return cls(float(amount) * _SCALE[scale], unit or "pairs")
        time = _TIME.fullmatch(text)
        if text and time and any(time.groups()):
            hours, minutes, seconds = (float(g) if g else 0.0 for g in time.groups())
            return cls(hours * 3600 + minutes * 60 + seconds, "seconds")
        raise ArgumentsError(
            f"cannot read the budget {value!r}: give new pairs (20000, 20k), tokens (3M-tokens, 95000-tokens) or "
            "teacher time (2h, 45m, 1h30m)"
        )

    def spent(self, usage: Any) -> float:
        """What ``usage`` (a `TeacherUsage`) spent of this budget's unit: answers from the cache are free."""
        if self.unit == "pairs":
            return float(usage.pairs - usage.cache_hits)
        if self.unit == "tokens":
            return float(usage.prompt_tokens + usage.completion_tokens)
        return float(usage.seconds)

    def format(self, amount: float | None = None) -> str:
        """``amount`` (default: the budget's) in this budget's unit, for people: ``20,000 pairs``, ``1h05m``."""
        amount = self.amount if amount is None else amount
        return format_seconds(amount) if self.unit == "seconds" else f"{amount:,.0f} {self.unit}"

    def __str__(self) -> str:
        return self.format()


def format_seconds(seconds: float) -> str:
    """``1h05m``; below an hour ``12.5 min``; below a minute ``42.0 s``."""
    minutes = round(seconds / 60)
    if minutes >= 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"
