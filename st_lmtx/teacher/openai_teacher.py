"""A teacher on any OpenAI-compatible endpoint (vLLM, llama.cpp's server, OpenAI), through the ``openai`` client.

- Pointwise: one request per (document, label); a document's first request goes alone, then its other labels
  together, all with the same prefix up to the label, so the server's prefix cache evaluates the document once.
- Listwise: one request per document listing its candidates; the answer is the numbers of the relevant ones.
- p(yes) from the top logprobs of the answer token, on the chat and the completions endpoints (``logprobs``).
- Retries (tenacity): exponential backoff with jitter on 429, 5xx, timeouts, dropped connections and
  unreadable responses, honouring ``Retry-After``. Several base URLs spread the documents between servers.
- Client-side rate limits (``rpm``, ``tpm``): one sliding-window limiter per teacher, shared by all its URLs,
  passed by every HTTP request, retries included (`st_lmtx.teacher.rate_limit`).
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import functools
import ipaddress
import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_random_exponential

from st_lmtx.errors import TeacherBudgetExceeded, TeacherConfigError
from st_lmtx.teacher.base import Emit, Judgment, PendingDocument, Teacher, TeacherError, TeacherUsage
from st_lmtx.teacher.prompts import PromptTemplate, as_prompt, p_yes, parse_verdict
from st_lmtx.teacher.rate_limit import RateLimiter, estimate_tokens

logger = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}

# The estimated tokens of the request the current task is sending, for the rate limiter's HTTP hook.
_REQUEST_TOKENS: contextvars.ContextVar[int] = contextvars.ContextVar("lmtx_request_tokens", default=0)


class MalformedResponse(Exception):
    """The server answered 200 with something that is not a completion."""


def is_transient(error: BaseException) -> bool:
    """Worth another try: rate limits, server errors, timeouts, dropped connections, unreadable bodies."""
    if isinstance(error, openai.APIStatusError):
        return error.status_code in (408, 409, 429) or error.status_code >= 500
    return isinstance(
        error, (openai.APIConnectionError, openai.APIResponseValidationError, MalformedResponse, json.JSONDecodeError)
    )


def retry_after_seconds(error: BaseException | None) -> float | None:
    """The server's ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``, when it sent one."""
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class _RetryAfterOrBackoff:
    """tenacity wait: the server's Retry-After when it sends one (up to ``max_retry_after`` seconds), else
    exponential backoff with jitter."""

    def __init__(self, multiplier: float, maximum: float, max_retry_after: float) -> None:
        self.backoff = wait_random_exponential(multiplier=multiplier, max=maximum)
        self.max_retry_after = max_retry_after

    def __call__(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        after = retry_after_seconds(error)
        return min(after, self.max_retry_after) if after is not None else self.backoff(state)


def check_url(url: str) -> None:
    """A `TeacherConfigError` unless ``url`` is an http(s) URL with a host (and a port in range, if any)."""
    usage = "give http(s)://HOST[:PORT]/PATH, e.g. http://127.0.0.1:8000/v1"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port out of range)
    except ValueError as e:  # the URL is not echoed: it may hold a key
        raise TeacherConfigError(f"a teacher URL is malformed ({e}): {usage}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise TeacherConfigError(f"a teacher URL is malformed (no host, or a space in it): {usage}")


def _is_loopback(url: str | None) -> bool:
    host = urlsplit(url).hostname if url else None
    if host in _LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback  # 127.0.0.0/8, ::1
    except ValueError:
        return False


def redact_url(url: str) -> str:
    """A URL without user:password, query or fragment, safe for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _resolve_api_key(api_key: str | None, base_url: str | None) -> str | None:
    """The key given, else ``OPENAI_API_KEY``; a loopback server gets a placeholder (it ignores the key, the
    client insists on one)."""
    key = api_key or os.environ.get("OPENAI_API_KEY")
    if not key:
        return "no-key" if _is_loopback(base_url) else None
    if base_url and urlsplit(base_url).scheme == "http" and not _is_loopback(base_url):
        _warn_clear_text(urlsplit(base_url).hostname)
    return key


@functools.cache
def _warn_clear_text(host: str) -> None:
    # Once a host: the openai client sends the key in every request's Authorization header, readable on the way.
    logger.warning(
        "The API key is sent unencrypted to %s (the teacher URL is http, not https): use https, or unset "
        "OPENAI_API_KEY if that server needs no key.",
        host,
    )


def served_models(base_url: str, api_key: str | None = None, timeout: float = 10.0) -> list[str] | None:
    """The model ids an OpenAI-compatible endpoint lists at ``GET /models`` (vLLM and llama.cpp servers list the
    one they serve), or None when it has no such route. A `TeacherError` when it cannot be reached, a
    `TeacherConfigError` when it refuses the key."""
    where = f"{redact_url(base_url)}/models"
    try:
        key = _resolve_api_key(api_key, base_url)
        with openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout, max_retries=1) as client:
            return [m.id for m in client.models.list()]
    except openai.APIConnectionError as e:
        raise TeacherError(f"the teacher endpoint cannot be reached (GET {where}: {e}): is its server running?") from e
    except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
        raise TeacherConfigError(
            f"the teacher endpoint refused the key (GET {where}: HTTP {e.status_code}): set OPENAI_API_KEY"
        ) from e
    except openai.OpenAIError as e:  # no such route (404), or no key at all for a remote endpoint
        logger.debug("GET %s failed: %s", where, e)
        return None


class OpenAITeacher(Teacher):
    """Judge pairs through OpenAI-compatible endpoints.

    Args:
        model: the model name the server knows.
        base_url: one URL or several (documents are spread across them); default ``OPENAI_BASE_URL``.
        api_key: default ``OPENAI_API_KEY``, as the openai client reads it; loopback servers need none.
        prompt: the `PromptTemplate` (paper prompt, chat endpoint by default).
        logprobs: ask for the answer's top logprobs and score p(yes); costs extra time on some servers.
        top_logprobs: how many alternatives to ask for.
        concurrency: requests in flight per base URL (default 8). vLLM and llama.cpp's ``llama-server`` batch
            concurrent requests, so use about the server's parallel slots (``llama-server --parallel N``; vLLM
            serves 32-256 at once on one GPU); a hosted API: what its rate limit allows. One document's labels
            are sent together after its first request, so they share the server's prefix cache.
        timeout: seconds per request.
        max_retries: retries per request after the first attempt.
        backoff_multiplier / backoff_max: exponential backoff with jitter between attempts, in seconds.
        max_retry_after: the longest server-requested ``Retry-After`` wait that is honoured.
        max_tokens_per_answer: the answer's length limit (pointwise: a word is enough).
        rpm: at most this many requests in any ``rate_window`` seconds (default 60: requests per minute), over all
            base URLs together; every attempt is a request, retries included. None: no limit.
        tpm: at most this many tokens in any ``rate_window`` seconds, over all base URLs. A request counts before it
            is sent, so its tokens are estimated: the prompt's characters / 4, rounded up (system prompt included),
            plus ``max_tokens_per_answer``. None: no limit.
        rate_window: the window of ``rpm`` and ``tpm``, in seconds. The limits are a sliding window (no window of
            this length, wherever it starts, holds more), and each request is counted for 1% longer (at least
            0.5 s), so that network delays that vary by up to that much cannot push the server's count over; a
            server's ``Retry-After`` still applies on top. Rate limits never change answers, so they are not part
            of the cache's key.
        cache, budget, show_progress_bar: see `Teacher`.

    Example::

        teacher = OpenAITeacher("qwen2.5-7b-instruct", base_url="http://127.0.0.1:8000/v1",
                                cache="teacher.sqlite", logprobs=True)
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
        logprobs: bool = False,
        top_logprobs: int = 5,
        concurrency: int = 8,
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
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
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
        self.max_tokens_per_answer = max_tokens_per_answer or 3
        self.temperature = temperature
        # One limiter for the teacher's lifetime: its windows span judge() calls and are shared by all URLs.
        limited = rpm is not None or tpm is not None
        self.rate_limiter = RateLimiter(rpm, tpm, rate_window) if limited else None

    @property
    def model_name(self) -> str:
        return self._model

    @property
    def graded(self) -> bool:
        return self.logprobs

    def config(self) -> dict[str, Any]:
        # Decides the answers; URLs and keys are deliberately absent.
        return {
            **super().config(),
            "prompt": self.prompt.to_dict(),
            "temperature": self.temperature,
        }

    def describe(self) -> dict[str, Any]:
        limits = self.rate_limiter.describe() if self.rate_limiter else {}
        return {
            **super().describe(),
            "prompt": self.prompt.name,
            "endpoints": [redact_url(u) for u in self.base_urls if u],
            **limits,
        }

    def _client(self, base_url: str | None) -> openai.AsyncOpenAI:
        # Our own tenacity loop retries; the client's built-in retries would double the attempts.
        key = _resolve_api_key(self._api_key, base_url)
        kwargs: dict[str, Any] = {}
        if self.rate_limiter is not None:
            # The limiter is passed in the HTTP client's request hook, as late as a request can be held: it then
            # counts each attempt (retries too) and dates it just before it goes out, not before the openai
            # client's own preparation (which can take a few hundred milliseconds on a process's first request).
            kwargs["http_client"] = openai.DefaultAsyncHttpxClient(event_hooks={"request": [self._before_send]})
        return openai.AsyncOpenAI(base_url=base_url, api_key=key, timeout=self.timeout, max_retries=0, **kwargs)

    async def _before_send(self, request: Any) -> None:
        await self.rate_limiter.acquire(_REQUEST_TOKENS.get())

    def _estimate_tokens(self, text: str) -> int:
        """What the rate limiter counts for a request: the prompt's characters / 4, rounded up, plus the longest
        answer."""
        if self.prompt.kind == "chat":
            prompt = (self.prompt.system or "") + text
        else:
            prompt = text + self.prompt.completion_suffix
        return estimate_tokens(prompt) + self.max_tokens_per_answer

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
        # Documents go round-robin to the servers. Per server, `concurrency` requests are in flight at most, and
        # as many documents are open: a document's first request goes alone (it puts the document in the
        # server's prefix cache), then its other labels go together and reuse that prefix.
        queues: list[asyncio.Queue] = [asyncio.Queue() for _ in self.base_urls]
        for n, item in enumerate(pending):
            queues[n % len(queues)].put_nowait(item)
        in_flight = [0]
        spent: list[TeacherBudgetExceeded] = []  # set when the budget stops a request from being sent
        clients = [self._client(url) for url in self.base_urls]
        workers = []
        for client, queue in zip(clients, queues):
            slots = asyncio.Semaphore(self.concurrency)
            workers += [
                asyncio.create_task(self._documents(client, slots, queue, emit, run, in_flight, spent))
                for _ in range(self.concurrency)
            ]
        limiter = self.rate_limiter
        waited, requests = (limiter.waited, limiter.requests) if limiter else (0.0, 0)
        try:
            # The first failure (exhausted retries) cancels the rest; answers so far are stored. A spent budget
            # sends nothing more but lets the requests already sent finish: they are paid for.
            await asyncio.gather(*workers)
            if spent:
                raise spent[0]
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            for client in clients:
                await client.close()
            if limiter and limiter.requests > requests:
                logger.info(
                    "Rate limits (%s): %d requests waited %.1f s in all",
                    limiter.describe(),
                    limiter.requests - requests,
                    limiter.waited - waited,
                )

    async def _documents(
        self,
        client,
        slots: asyncio.Semaphore,
        queue: asyncio.Queue,
        emit: Emit,
        run: TeacherUsage,
        in_flight: list[int],
        spent: list[TeacherBudgetExceeded],
    ) -> None:
        while not spent:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            units = [[j] for j in item.positions]
            requests = [self._request(client, slots, item, u, emit, run, in_flight) for u in units]
            try:
                await requests[0]
            except BaseException as e:  # spent, failed or cancelled: the others were never started
                for r in requests[1:]:
                    r.close()
                if not isinstance(e, TeacherBudgetExceeded):
                    raise
                spent.append(e)
                return
            rest = [asyncio.ensure_future(r) for r in requests[1:]]
            try:
                outcomes = await asyncio.gather(*rest, return_exceptions=True)
            finally:
                for task in rest:  # after a failure, stop this document's other requests too
                    task.cancel()
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            spent += [e for e in errors if isinstance(e, TeacherBudgetExceeded)]
            for error in errors:
                if not isinstance(error, TeacherBudgetExceeded):
                    raise error

    async def _request(
        self,
        client,
        slots: asyncio.Semaphore,
        item: PendingDocument,
        positions: list[int],
        emit: Emit,
        run: TeacherUsage,
        in_flight: list[int],
    ) -> None:
        async with slots:
            self.check_budget(run, in_flight[0])
            in_flight[0] += 1
            try:
                judgments, prompt_tokens, completion_tokens = await self._ask(client, item, positions, run)
            finally:
                in_flight[0] -= 1
        run.calls += 1
        run.prompt_tokens += prompt_tokens
        run.completion_tokens += completion_tokens
        for n, (j, judgment) in enumerate(zip(positions, judgments)):
            # Tokens are booked on the first pair of a call, so cache totals add up to the calls'.
            emit(item, j, judgment, prompt_tokens if n == 0 else 0, completion_tokens if n == 0 else 0)

    async def _ask(self, client, item: PendingDocument, positions: list[int], run: TeacherUsage):
        labels = [item.labels[j] for j in positions]
        text = self.prompt.render_pointwise(item.doc, labels[0])
        if self.rate_limiter is not None:
            tokens = self._estimate_tokens(text)
            try:
                self.rate_limiter.check(tokens)
            except ValueError as e:
                raise TeacherError(str(e)) from None
            _REQUEST_TOKENS.set(tokens)  # read by _before_send, in this task, for every attempt

        def before_retry(state: RetryCallState) -> None:
            run.retries += 1
            error = state.outcome.exception() if state.outcome else None
            logger.warning("Teacher request failed (%s); retry %d", _describe(error), state.attempt_number)

        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            wait=_RetryAfterOrBackoff(self.backoff_multiplier, self.backoff_max, self.max_retry_after),
            stop=stop_after_attempt(self.max_retries + 1),
            before_sleep=before_retry,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    answer, alternatives, usage = await self._complete(client, text)
        except Exception as e:
            attempts = retrying.statistics.get("attempt_number", 1)
            hint = "" if is_transient(e) else " (not a transient error: check the model name, the prompt and the key)"
            raise TeacherError(
                f"the teacher failed on a document after {attempts} attempt{'s' if attempts > 1 else ''}: "
                f"{_describe(e)}{hint}"
            ) from e
        prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
        completion_tokens = getattr(usage, "completion_tokens", 0) or 0
        verdict = parse_verdict(answer)
        score = p_yes(alternatives) if alternatives else None
        graded = score is not None
        if score is None:
            score = 1.0 if verdict == "yes" else 0.0
        judgments = [Judgment(labels[0], verdict, score, graded, answer)]
        return judgments, prompt_tokens, completion_tokens

    async def _complete(self, client, text: str) -> tuple[str, list[tuple[str, float]], Any]:
        """One request; returns the answer text, the answer token's (token, logprob) alternatives, usage."""
        want_logprobs = self.logprobs
        if self.prompt.kind == "chat":
            messages = ([{"role": "system", "content": self.prompt.system}] if self.prompt.system else []) + [
                {"role": "user", "content": text}
            ]
            kwargs: dict[str, Any] = {}
            if want_logprobs:
                kwargs.update(logprobs=True, top_logprobs=self.top_logprobs)
            response = await client.chat.completions.create(
                model=self._model,
                messages=messages,
                max_tokens=self.max_tokens_per_answer,
                temperature=self.temperature,
                **kwargs,
            )
            try:
                choice = response.choices[0]
                answer = choice.message.content or ""
                alternatives: list[tuple[str, float]] = []
                if want_logprobs and choice.logprobs and choice.logprobs.content:
                    position = _answer_position([t.token for t in choice.logprobs.content])
                    alternatives = [(t.token, t.logprob) for t in choice.logprobs.content[position].top_logprobs]
            except (AttributeError, IndexError, TypeError) as e:
                raise MalformedResponse(f"not a chat completion: {str(response)[:200]!r}") from e
        else:
            kwargs = {"logprobs": self.top_logprobs} if want_logprobs else {}
            response = await client.completions.create(
                model=self._model,
                prompt=text + self.prompt.completion_suffix,
                max_tokens=self.max_tokens_per_answer,
                temperature=self.temperature,
                **kwargs,
            )
            try:
                choice = response.choices[0]
                answer = choice.text or ""
                alternatives = []
                if want_logprobs and choice.logprobs and choice.logprobs.top_logprobs:
                    position = _answer_position(choice.logprobs.tokens or [])
                    alternatives = list(choice.logprobs.top_logprobs[position].items())
            except (AttributeError, IndexError, TypeError) as e:
                raise MalformedResponse(f"not a completion: {str(response)[:200]!r}") from e
        return answer, alternatives, getattr(response, "usage", None)


def _answer_position(tokens: Sequence[str]) -> int:
    """The first generated token that spells a word (skips "**", quotes and spaces before "Yes")."""
    for i, token in enumerate(tokens):
        if any(ch.isalnum() for ch in token):
            return i
    return 0


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}"
    return f"{type(error).__name__}: {str(error)[:200]}"
