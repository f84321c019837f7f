"""Client-side rate limits for endpoint teachers: requests and tokens per window, on the ``limits`` library.

The semantics are a sliding window log (``limits``' moving window): a request is let through only when the
requests let through in the window before it, plus this one, are at most ``rpm``, and their estimated tokens at
most ``tpm``. So no window of that length, wherever it starts, holds more than ``rpm`` requests or ``tpm``
tokens. A leaky or token bucket would not guarantee that: it lets a full burst through, then refills at the
steady rate, so one window can see up to twice the limit.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

# The moving window keeps one entry per unit counted; past this many units a window, tokens are counted in
# coarser units (rounding each request up and the limit down, so the guarantee still holds).
MAX_TOKEN_UNITS = 100_000


def estimate_tokens(text: str) -> int:
    """About 4 characters a token (English text, BPE vocabularies), rounded up: the prompt is counted before it
    is sent, with no tokenizer at hand."""
    return math.ceil(len(text) / 4)


def window_margin(window: float) -> float:
    """How much longer than the window each request is counted: a request reaches the server a little after the
    limiter lets it go (a new connection, a busy client), by a delay that varies, and the server counts when it
    arrives. 1% of the window, at least 0.5 s (a loaded 2-core machine delays a request by some tenths of a
    second; 0.6 s of a minute)."""
    return max(0.5, 0.01 * window)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
        raise ValueError(f"{name} must be a positive whole number, got {value!r}")
    return int(value)


class _Window(RateLimitItemPerSecond):
    """``amount`` per ``seconds``, a float: the library's items count whole seconds, its moving window does not
    need them to (the margin and short test windows are fractions of a second)."""

    __slots__ = ("seconds",)

    def __init__(self, amount: int, seconds: float, namespace: str) -> None:
        super().__init__(amount, multiples=math.ceil(seconds), namespace=namespace)
        self.seconds = seconds

    def get_expiry(self) -> float:  # type: ignore[override]
        return self.seconds


class RateLimiter:
    """At most ``rpm`` requests and ``tpm`` tokens in any ``window`` seconds (60: per minute), for every request of
    one teacher, whichever base URL it goes to.

    A request waits until both limits have room for it, then takes its share of both at one instant (counting one
    limit while waiting for the other would date that one too early). Waiting requests queue first come, first
    served, so a large request is not overtaken forever by small ones. Each request is counted for
    ``window + window_margin(window)`` seconds.

    Args:
        rpm: requests per window, or None for no request limit.
        tpm: tokens per window (as the caller estimates them), or None for no token limit.
        window: the window's length in seconds.
    """

    def __init__(self, rpm: int | None = None, tpm: int | None = None, window: float = 60.0) -> None:
        self.rpm = None if rpm is None else _positive_int("rpm", rpm)
        self.tpm = None if tpm is None else _positive_int("tpm", tpm)
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not window > 0:
            raise ValueError(f"rate_window must be a positive number of seconds, got {window!r}")
        self.window = float(window)
        span = self.window + window_margin(self.window)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._requests = _Window(self.rpm, span, "lmtx-requests") if self.rpm else None
        self._token_unit = math.ceil(self.tpm / MAX_TOKEN_UNITS) if self.tpm else 1
        self._tokens = _Window(self.tpm // self._token_unit, span, "lmtx-tokens") if self.tpm else None
        self._lock = threading.Lock()  # test-then-hit of both limits is one step, even across threads
        self._queue: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self.requests = 0  # let through so far
        self.waited = 0.0  # seconds requests spent waiting, summed

    def check(self, tokens: int) -> None:
        """Raise ValueError when a request of ``tokens`` tokens could never be let through."""
        if self.tpm is not None and tokens > self.tpm:
            raise ValueError(
                f"a request of about {tokens} tokens exceeds the token limit of {self.tpm} per "
                f"{self.window:g} s: raise tpm or shorten the documents"
            )

    def _fifo(self) -> asyncio.Lock:
        # asyncio locks belong to one event loop; the teacher runs a new loop per judge() call.
        loop = asyncio.get_running_loop()
        if self._queue is None or self._queue[0] is not loop:
            self._queue = (loop, asyncio.Lock())
        return self._queue[1]

    async def acquire(self, tokens: int = 0) -> float:
        """Wait until one more request of ``tokens`` estimated tokens fits both limits, and count it. Returns the
        seconds waited."""
        self.check(tokens)
        costs = []
        if self._requests is not None:
            costs.append((self._requests, 1))
        if self._tokens is not None and tokens > 0:
            costs.append((self._tokens, math.ceil(tokens / self._token_unit)))
        start = time.monotonic()
        async with self._fifo():
            while True:
                with self._lock:
                    full = [item for item, cost in costs if not self._limiter.test(item, cost=cost)]
                    if not full:
                        for item, cost in costs:
                            self._limiter.hit(item, cost=cost)
                        break
                    # The earliest time the oldest entry of a full window leaves it; a request needing several
                    # entries gone loops until enough have.
                    reset = max(self._limiter.get_window_stats(item).reset_time for item in full)
                await asyncio.sleep(max(reset - time.time(), 0.001))
        waited = time.monotonic() - start
        self.requests += 1
        self.waited += waited
        return waited

    def describe(self) -> dict[str, float | int]:
        """The limits set, for logs and model cards."""
        limits = {"rpm": self.rpm, "tpm": self.tpm}
        return {**{k: v for k, v in limits.items() if v is not None}, "rate_window": self.window}
