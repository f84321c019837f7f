"""A teacher on any OpenAI-compatible endpoint (vLLM, llama.cpp's server, OpenAI), through the ``openai`` client.

- Request shapes (`st_lmtx.teacher.request_shapes`): where the server takes a list of prompts and renders its chat
  template for us (vLLM, llama.cpp's server), many pairs go in one ``/v1/completions`` request; elsewhere one chat
  request a pair. Either way a document's first label goes ahead of its others, all with the same prefix up to the
  label, so the server's prefix cache evaluates the document once.
- One answer token, forced to yes or no where the server's tokens are known, and p(yes) from its top logprobs
  (graded by default; a server that sends none is detected, warned about once, and the run goes on ungraded).
- Requests in flight sized to the server (`st_lmtx.teacher.in_flight`), or a fixed number.
- Retries (tenacity): exponential backoff with jitter on 429, 5xx, timeouts, dropped connections and
  unreadable responses, honouring ``Retry-After``. Several base URLs spread the documents between servers.
- Client-side rate limits (``rpm``, ``tpm``): one sliding-window limiter per teacher, shared by all its URLs,
  passed by every HTTP request, retries included (`st_lmtx.teacher.rate_limit`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import sys
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from st_lmtx.errors import TeacherBudgetExceeded
from st_lmtx.teacher.base import Answered, Emit, Judgment, PendingDocument, Teacher, TeacherError, TeacherUsage
from st_lmtx.teacher.endpoints import (
    RetryAfterOrBackoff,
    check_url,
    describe_error,
    is_overload,
    is_transient,
    redact_url,
    resolve_api_key,
)
from st_lmtx.teacher.in_flight import InFlight
from st_lmtx.teacher.prompts import PromptTemplate, as_prompt, layout_name
from st_lmtx.teacher.rate_limit import RateLimiter, estimate_tokens
from st_lmtx.teacher.request_shapes import Answer, ChatPair, PromptList, ServerTraits, discover

logger = logging.getLogger(__name__)

# The estimated tokens of the request the current task is sending, for the rate limiter's HTTP hook.
_REQUEST_TOKENS: contextvars.ContextVar[int] = contextvars.ContextVar("lmtx_request_tokens", default=0)


# Pairs a request carries at most on the prompt-list shape: enough to amortise a request's cost on the client,
# few enough that a document pack's answers come back within a step or two of a GPU server.
PAIRS_PER_REQUEST = 64


@dataclass
class _Server:
    """One base URL's client, request shape and in-flight limit, for one `judge` call's event loop."""

    client: openai.AsyncOpenAI
    shape: PromptList | ChatPair
    limit: InFlight
    packs: deque[list[list[tuple[PendingDocument, int]]]] = field(default_factory=deque)


@dataclass
class _Sending:
    """What the requests of one `judge` call share."""

    emit: Emit
    run: TeacherUsage
    in_flight_pairs: int = 0
    spent: list[TeacherBudgetExceeded] = field(default_factory=list)


class OpenAITeacher(Teacher):
    """Judge pairs through OpenAI-compatible endpoints.

    Args:
        model: the model name the server knows.
        base_url: one URL or several (documents are spread across them); default ``OPENAI_BASE_URL``.
        api_key: default ``OPENAI_API_KEY``, as the openai client reads it; loopback servers need none.
        prompt: the `PromptTemplate` (compact prompt, chat endpoint by default).
        logprobs: ask for the answer's top logprobs and score p(yes) (default). A server that refuses them, or
            answers without them, is detected on its first answers and warned about once; the run goes on
            ungraded (the pseudo-labels then take the first "yes" in shortlist order), and says so.
        top_logprobs: how many alternatives to ask for.
        concurrency: requests in flight per base URL: ``"auto"`` (default) sizes it to the server, growing while
            throughput grows and latency holds and backing off on 429s, 5xx and timeouts; a number fixes it (a
            hosted API: what its rate limit allows).
        timeout: seconds per request.
        max_retries: retries per request after the first attempt.
        backoff_multiplier / backoff_max: exponential backoff with jitter between attempts, in seconds.
        max_retry_after: the longest server-requested ``Retry-After`` wait that is honoured.
        max_tokens_per_answer: the answer's length limit; default 1 where the first token is the answer (the
            shipped prompts, or yes/no forced), else 3.
        rpm: at most this many requests in any ``rate_window`` seconds (default 60: requests per minute), over all
            base URLs together; every attempt is a request, retries included. None: no limit.
        tpm: at most this many tokens in any ``rate_window`` seconds, over all base URLs. A request counts before it
            is sent, so its tokens are estimated: the prompts' characters / 4, rounded up (system prompt included),
            plus ``max_tokens_per_answer`` a prompt. None: no limit.
        rate_window: the window of ``rpm`` and ``tpm``, in seconds. The limits are a sliding window (no window of
            this length, wherever it starts, holds more), and each request is counted for 1% longer (at least
            0.5 s), so that network delays that vary by up to that much cannot push the server's count over; a
            server's ``Retry-After`` still applies on top. Rate limits never change answers, so they are not part
            of the cache's key.
        cache, budget, show_progress_bar: see `Teacher`.

    Example::

        teacher = OpenAITeacher("Qwen/Qwen2.5-7B-Instruct", base_url="http://127.0.0.1:8000/v1",
                                cache="teacher.sqlite")
        result = teacher.judge(["Wheat exports rose ..."], [["Wheat", "Gold"]])
        [(j.label, j.verdict, j.score) for j in result.judgments[0]]
    """

    backend = "openai"

    def __init__(
        self,
        model: str,
        base_url: str | Sequence[str] | None = None,
        api_key: str | None = None,
        prompt: PromptTemplate | str | None = None,
        logprobs: bool = True,
        top_logprobs: int = 5,
        concurrency: int | str = "auto",
        timeout: float = 120.0,
        max_retries: int = 6,
        backoff_multiplier: float = 0.5,
        backoff_max: float = 60.0,
        max_retry_after: float = 300.0,
        max_tokens_per_answer: int | None = None,
        temperature: float = 0.0,
        rpm: int | None = None,
        tpm: int | None = None,
        rate_window: float = 60.0,
        **teacher_kwargs: Any,
    ) -> None:
        super().__init__(**teacher_kwargs)
        if concurrency != "auto" and (not isinstance(concurrency, int) or concurrency < 1):
            raise ValueError(f"concurrency must be 'auto' or an integer >= 1; got {concurrency!r}")
        self._model = model
        urls = [base_url] if isinstance(base_url, str) or base_url is None else list(base_url)
        self.base_urls = [u or os.environ.get("OPENAI_BASE_URL") for u in urls] or [None]
        for url in self.base_urls:
            if url:
                check_url(url)
        self._api_key = api_key
        self.prompt = as_prompt(prompt)
        self.logprobs = logprobs
        self.top_logprobs = top_logprobs
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_multiplier = backoff_multiplier
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.max_tokens_per_answer = max_tokens_per_answer
        self.temperature = temperature
        # One limiter for the teacher's lifetime: its windows span judge() calls and are shared by all URLs.
        limited = rpm is not None or tpm is not None
        self.rate_limiter = RateLimiter(rpm, tpm, rate_window) if limited else None
        # Learnt once per URL and kept across judge() calls: what the server is, and how much it takes at once.
        self._traits: dict[str | None, ServerTraits] = {}
        self._limits = {url: InFlight(None if concurrency == "auto" else concurrency) for url in self.base_urls}
        self._logprobs_state = "asked" if logprobs else "off"  # then "seen", or "refused" / "absent"

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def graded(self) -> bool:
        return self._logprobs_state in ("asked", "seen")

    @property
    def ungraded_reason(self) -> str | None:
        """Why this teacher's scores are not probabilities although asked to be, else None."""
        return {
            "refused": "the endpoint refused logprobs",
            "absent": "the endpoint answered without logprobs",
        }.get(self._logprobs_state)

    def config(self) -> dict[str, Any]:
        # Decides the answers; URLs and keys are deliberately absent. Graded and ungraded answers are kept apart.
        return {
            **super().config(),
            "prompt": self.prompt.to_dict(),
            "temperature": self.temperature,
            "logprobs": self.logprobs,
        }

    def describe(self) -> dict[str, Any]:
        limits = self.rate_limiter.describe() if self.rate_limiter else {}
        described = {
            **super().describe(),
            "prompt": self.prompt.name,
            "endpoints": [redact_url(u) for u in self.base_urls if u],
            **limits,
        }
        if self.ungraded_reason:
            described["ungraded"] = self.ungraded_reason
        return described

    def _client(self, base_url: str | None, rate_limited: bool = True) -> openai.AsyncOpenAI:
        # Our own tenacity loop retries; the client's built-in retries would double the attempts.
        key = resolve_api_key(self._api_key, base_url)
        http: dict[str, Any] = {}
        if self.rate_limiter is not None and rate_limited:
            # The limiter is passed in the HTTP client's request hook, as late as a request can be held: it then
            # counts each attempt (retries too) and dates it just before it goes out, not before the openai
            # client's own preparation (which can take a few hundred milliseconds on a process's first request).
            http["event_hooks"] = {"request": [self._before_send]}
        if base_url and urlsplit(base_url).scheme == "http":
            http["verify"] = False  # no TLS on plain http: loading the CA bundle would only cost time
        return openai.AsyncOpenAI(
            base_url=base_url,
            api_key=key,
            timeout=self.timeout,
            max_retries=0,
            http_client=openai.DefaultAsyncHttpxClient(**http) if http else None,
        )

    async def _before_send(self, request: Any) -> None:
        await self.rate_limiter.acquire(_REQUEST_TOKENS.get())

    def _answer_tokens(self, traits: ServerTraits) -> int:
        if self.max_tokens_per_answer:
            return self.max_tokens_per_answer
        # One token where it is the answer: yes/no forced, or a shipped prompt (it asks for yes or no last).
        return 1 if traits.answer_ids or layout_name(self.prompt.pointwise) != "custom" else 3

    def _estimate_tokens(self, texts: str | list[str], answer_tokens: int = 1) -> int:
        """What the rate limiter counts for a request: its prompts' characters / 4, rounded up, plus the longest
        answers."""
        texts = [texts] if isinstance(texts, str) else texts
        if self.prompt.kind == "chat":
            total = sum(estimate_tokens((self.prompt.system or "") + t) for t in texts)
        else:
            total = sum(estimate_tokens(t + self.prompt.completion_suffix) for t in texts)
        return total + answer_tokens * len(texts)

    def _judge_documents(self, pending: list[PendingDocument], emit: Emit, run: TeacherUsage) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            asyncio.run(self._run(pending, emit, run))
            return
        # Called from a running event loop (a notebook): run ours in a thread of its own.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(asyncio.run, self._run(pending, emit, run)).result()

    async def _run(self, pending: list[PendingDocument], emit: Emit, run: TeacherUsage) -> None:
        # Documents go round-robin to the servers, in packs: a pack's first labels go in one request (they put
        # its documents in the server's prefix cache), then its other labels, which reuse those prefixes.
        call = _Sending(emit, run)
        servers = [await self._server(url) for url in self.base_urls]
        for n, item in enumerate(pending):
            self._add(servers[n % len(servers)], item)
        limiter = self.rate_limiter
        waited, requests = (limiter.waited, limiter.requests) if limiter else (0.0, 0)
        workers = [
            asyncio.create_task(self._packs(server, call))
            for server in servers
            for _ in range(min(len(server.packs), server.limit.maximum))
        ]
        try:
            # The first failure (exhausted retries) cancels the rest; answers so far are stored. A spent budget
            # sends nothing more but lets the requests already sent finish: they are paid for.
            await asyncio.gather(*workers)
            if call.spent:
                raise call.spent[0]
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for server in servers:
                await server.client.close()
            self._log_run(servers, limiter, waited, requests)

    async def _server(self, url: str | None) -> _Server:
        client = self._client(url)
        if url not in self._traits:
            # On a client of its own: a few requests, once, that no rate limit or budget should count.
            async with self._client(url, rate_limited=False) as probe:
                self._traits[url] = await discover(probe, str(client.base_url), self._model, self.prompt)
        traits = self._traits[url]
        shape = (PromptList if traits.lists else ChatPair)(self.prompt, traits, self._answer_tokens(traits))
        return _Server(client, shape, self._limits[url])

    def _add(self, server: _Server, item: PendingDocument) -> None:
        """Put a document in a pack: its first label in the pack's first request, its others in the second. On
        the prompt list a pack holds documents up to `PAIRS_PER_REQUEST` pairs; on the chat shape, one document,
        a request a pair."""
        first, rest = [(item, item.positions[0])], [(item, j) for j in item.positions[1:]]
        if isinstance(server.shape, ChatPair):
            server.packs.append([first] + [[pair] for pair in rest])
            return
        pack = server.packs[-1] if server.packs else None
        if pack is None or sum(map(len, pack)) + len(item.positions) > PAIRS_PER_REQUEST:
            pack = [[], []]
            server.packs.append(pack)
        pack[0] += first
        pack[1] += rest

    async def _packs(self, server: _Server, call: _Sending) -> None:
        """A worker: one pack at a time, its first request, then the others together."""
        while server.packs and not call.spent:
            first, *rest = server.packs.popleft()
            rest = [unit for unit in rest if unit]
            try:
                await self._send(server, first, call)
            except TeacherBudgetExceeded as e:
                call.spent.append(e)
                return
            outcomes = await asyncio.gather(*(self._send(server, unit, call) for unit in rest), return_exceptions=True)
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            call.spent += [e for e in errors if isinstance(e, TeacherBudgetExceeded)]
            for error in errors:
                if not isinstance(error, TeacherBudgetExceeded):
                    raise error

    async def _send(self, server: _Server, unit: list[tuple[PendingDocument, int]], call: _Sending) -> None:
        """One request for ``unit``'s pairs (those the budget still pays for), retried as need be; its answers are
        emitted together."""
        fit = self.pairs_that_fit(call.run, call.in_flight_pairs)
        self.check_budget(call.run, call.in_flight_pairs, min(1, len(unit)))  # raises when not one pair fits
        cut = fit < len(unit)
        unit = unit[:fit]  # what the budget does not pay for waits for a run with a larger one
        texts = [server.shape.render(item.doc, item.labels[j]) for item, j in unit]
        if self.rate_limiter is not None:
            tokens = self._estimate_tokens(texts, self._answer_tokens(server.shape.traits))
            try:
                self.rate_limiter.check(tokens)
            except ValueError as e:
                raise TeacherError(str(e)) from None
            _REQUEST_TOKENS.set(tokens)  # read by _before_send, in this task, for every attempt
        call.in_flight_pairs += len(unit)  # reserved from the budget until answered
        try:
            answers, usage = await self._retrying(server, texts, call)
        finally:
            call.in_flight_pairs -= len(unit)
        call.run.calls += 1
        prompt_tokens = (usage or {}).get("prompt_tokens") or 0
        completion_tokens = (usage or {}).get("completion_tokens") or 0
        call.run.prompt_tokens += prompt_tokens
        call.run.completion_tokens += completion_tokens
        answered = [
            Answered(item, j, Judgment(item.labels[j], *answer.judged(), answer.text))
            for (item, j), answer in zip(unit, answers)
        ]
        answered[0].prompt_tokens, answered[0].completion_tokens = prompt_tokens, completion_tokens
        call.emit(answered)
        if cut:  # the pairs left out of this request are the budget's end: stop here, whatever it now estimates
            self.check_budget(call.run, call.in_flight_pairs, sys.maxsize)

    async def _retrying(self, server: _Server, texts: list[str], call: _Sending) -> tuple[list[Answer], Any]:
        def before_retry(state: RetryCallState) -> None:
            call.run.retries += 1
            error = state.outcome.exception() if state.outcome else None
            logger.warning("Teacher request failed (%s); retry %d", describe_error(error), state.attempt_number)

        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=RetryAfterOrBackoff(self.backoff_multiplier, self.backoff_max, self.max_retry_after),
            stop=stop_after_attempt(self.max_retries + 1),
            before_sleep=before_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    # A slot an attempt: a retry's backoff holds no room in flight.
                    async with server.limit.slot() as done:
                        try:
                            answers, usage = await self._ask(server, texts)
                        except Exception as e:
                            done(failed=is_overload(e))
                            raise
                        done(pairs=len(texts))
        except (TeacherBudgetExceeded, asyncio.CancelledError):
            raise
        except Exception as e:
            attempts = retrying.statistics.get("attempt_number", 1)
            hint = "" if is_transient(e) else " (not a transient error: check the model name, the prompt and the key)"
            raise TeacherError(
                f"the teacher failed on a request after {attempts} attempt{'s' if attempts > 1 else ''}: "
                f"{describe_error(e)}{hint}"
            ) from e
        return answers, usage

    async def _ask(self, server: _Server, texts: list[str]) -> tuple[list[Answer], Any]:
        """One attempt. Until logprobs are seen in an answer, a server that refuses them (a 400 for a request that
        asks for them) or leaves them out is noticed: warned about once, and not asked for them again."""
        logprobs = self.top_logprobs if self._logprobs_state in ("asked", "seen") else None
        try:
            answers, usage = await server.shape.ask(server.client, self._model, texts, logprobs, self.temperature)
        except openai.BadRequestError as e:
            if self._logprobs_state != "asked" or "logprob" not in str(e).lower():
                raise
            answers, usage = await server.shape.ask(server.client, self._model, texts, None, self.temperature)
            self._stop_asking_logprobs("refused", "it refuses a request that asks for them")
            return answers, usage
        if self._logprobs_state == "asked":
            if all(a.alternatives is None for a in answers):
                self._stop_asking_logprobs("absent", "its answers carry none")
            else:
                self._logprobs_state = "seen"
        return answers, usage

    def _stop_asking_logprobs(self, state: str, why: str) -> None:
        if self._logprobs_state == "asked":
            logger.warning(
                'The teacher endpoint gives no logprobs (%s): the run goes on ungraded, each "yes" scoring 1.0, '
                'so a document\'s first "yes" in shortlist order is its positive. Serve the model where logprobs '
                "are returned (vLLM, llama.cpp's server) for graded answers, or pass --no-logprobs to say so.",
                why,
            )
        self._logprobs_state = state

    def _log_run(self, servers: list[_Server], limiter, waited: float, requests: int) -> None:
        for url, server in zip(self.base_urls, servers):
            logger.info(
                "Teacher endpoint %s: %s, %s",
                redact_url(url) if url else "(OPENAI_BASE_URL)",
                server.shape.traits.source,
                server.limit.describe(),
            )
        if limiter and limiter.requests > requests:
            logger.info(
                "Rate limits (%s): %d requests waited %.1f s in all",
                limiter.describe(),
                limiter.requests - requests,
                limiter.waited - waited,
            )
