"""How many requests an endpoint teacher keeps in flight to one server: a fixed number, or sized to the server.

``concurrency="auto"`` (the default) starts with one request and measures each window of answers (at least 4, at
most the limit's worth): their pairs a second and their mean latency. The limit grows, doubling at first and then
by a tenth, while each window's throughput beats the last one's by a tenth, and by at least half the limit's own
rise, and its latency stays within 2.5x the lowest seen: a server with room answers more as more is asked (vLLM's
continuous batching until its batch is full), while one that queues answers about as many, a little sooner only
because the next request waits at the server instead of on the client. When, in two windows running, latency
passes 1.5x the lowest with no more answers, the server queues what it cannot run (a one-slot llama.cpp server, a
GPU at its batch size): the limit steps back to the most under which latency held, and waits longer before each
new try that fails the same way. A 429, a 5xx or a timeout halves it, once for the requests that were in flight
together.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

START = 1
MAXIMUM = 1024
# Latency "holds" while a window's mean stays within this factor of the lowest window mean seen.
HOLDS = 1.5
# Throughput "grows" when a window's pairs a second beat the previous window's by this factor.
GROWS = 1.1
# Throughput must rise by at least this share of the limit's rise (doubling the limit: 1.5x the pairs a second).
PAYS = 0.5
# Past this factor of the lowest latency, more in flight only queues, whatever throughput says.
QUEUED = 2.5
# Answers a window holds at least (at most the limit's worth when that is more).
WINDOW = 4
# Windows running in which latency grew with no more answers before the limit steps back.
STRIKES = 2


class InFlight:
    """A limit on the requests in flight to one server; ``fixed`` pins it, else it is sized as the module says.

    Example::

        limit = InFlight()                    # auto
        async with limit.slot() as done:      # waits for room
            answer = await send(request)
            done(pairs=len(request.prompts))  # or done(failed=True) on a 429 / 5xx / timeout
    """

    def __init__(self, fixed: int | None = None, start: int = START, maximum: int = MAXIMUM) -> None:
        if fixed is not None and fixed < 1:
            raise ValueError("concurrency must be >= 1")
        self.fixed = fixed
        self.limit = float(fixed or start)
        self.maximum = fixed or maximum
        self.in_flight = 0
        self.peak = self.limit  # the highest limit reached, for the log
        self._room: asyncio.Condition | None = None  # made in the event loop that uses it (one a judge() call)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._window_start = time.perf_counter()
        self._window_done = self._window_pairs = 0
        self._window_latency = 0.0
        self._window_failed = False
        self._lowest_latency = float("inf")
        self._previous_rate = 0.0
        self._previous_limit = self.limit  # the limit the previous window's rate was measured under
        self._slow_start = True
        self._wait_windows = 0  # windows to wait before trying to grow again, after a try that did not pay
        self._backoffs = 0
        self._generation = 0  # bumped by each halving: the failures of requests sent before it count once
        self._held = 1.0  # the highest limit under which latency held
        self._strikes = 0  # windows running with latency up and no more answers
        self.answered, self.latency_total = 0, 0.0

    @property
    def auto(self) -> bool:
        return self.fixed is None

    @asynccontextmanager
    async def slot(self) -> AsyncIterator:
        """Wait for room; yields ``done(pairs=..., failed=...)`` to report the request's outcome."""
        if self._loop is not asyncio.get_running_loop():
            self._loop, self._room, self.in_flight = asyncio.get_running_loop(), asyncio.Condition(), 0
        async with self._room:
            await self._room.wait_for(lambda: self.in_flight < int(self.limit))
            self.in_flight += 1
        started, generation = time.perf_counter(), self._generation
        outcome = {"pairs": 0, "failed": False}

        def done(pairs: int = 0, failed: bool = False) -> None:
            outcome.update(pairs=pairs, failed=failed)

        try:
            yield done
        finally:
            async with self._room:
                self.in_flight -= 1
                if not (outcome["failed"] and generation != self._generation):
                    self._record(time.perf_counter() - started, outcome["pairs"], outcome["failed"])
                self._room.notify(max(1, int(self.limit) - self.in_flight))

    def _record(self, latency: float, pairs: int, failed: bool) -> None:
        if failed:
            self._window_failed = True
        else:
            self.answered += 1
            self.latency_total += latency
            self._window_done += 1
            self._window_pairs += pairs
            self._window_latency += latency
        if not self.auto:
            return
        if self._window_failed:
            self._resize(failed=True)
        elif self._window_done >= max(WINDOW, int(self.limit)):
            self._resize()

    def _resize(self, failed: bool = False) -> None:
        now = time.perf_counter()
        if failed:  # the server says it is over its capacity: halve, and grow by a tenth from here on
            self.limit = self._held = max(1.0, self.limit / 2)
            self._slow_start, self._wait_windows = False, 2
            self._previous_rate = 0.0
            self._generation += 1
        elif self._window_done:
            limit = self.limit
            rate = self._window_pairs / max(now - self._window_start, 1e-9)
            latency = self._window_latency / self._window_done
            self._lowest_latency = min(self._lowest_latency, latency)
            holds = latency <= HOLDS * self._lowest_latency
            wanted = max(GROWS, 1 + PAYS * (self.limit / self._previous_limit - 1))
            grows = rate >= wanted * self._previous_rate and latency <= QUEUED * self._lowest_latency
            if holds:
                self._held = max(self._held, self.limit)
            self._strikes = 0 if holds or grows else self._strikes + 1
            if self._wait_windows > 0:
                self._wait_windows -= 1
            elif grows:
                self.limit = min(self.maximum, self.limit * 2 if self._slow_start else self.limit * 1.1 + 1)
            elif self._strikes >= STRIKES:
                # Queued at the server and no more done, twice running (one window can be a new connection's cost):
                # back to the most that held, and wait longer before each new try that fails the same way.
                self._slow_start, self._strikes = False, 0
                self._backoffs += 1
                self.limit = max(1.0, min(self._held, 0.75 * self.limit))
                self._wait_windows = min(64, 2**self._backoffs)
            self._previous_rate, self._previous_limit = rate, limit
        self.peak = max(self.peak, self.limit)
        self._window_start = now
        self._window_done = self._window_pairs = 0
        self._window_latency = 0.0
        self._window_failed = False

    @property
    def mean_latency(self) -> float | None:
        """The mean seconds an answered request took, over this limit's life."""
        return self.latency_total / self.answered if self.answered else None

    def describe(self) -> str:
        if not self.auto:
            return f"{self.fixed} in flight"
        return f"auto: {int(self.limit)} in flight now, {int(self.peak)} at most"
