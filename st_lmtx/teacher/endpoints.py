"""Talking to an OpenAI-compatible endpoint: which failures are worth another try, how long to wait, what a URL
must look like, which key goes where, and what the endpoint serves. No key or URL userinfo is ever logged."""

from __future__ import annotations

import email.utils
import functools
import ipaddress
import json
import logging
import os
import time
from urllib.parse import urlsplit

import openai
from tenacity import RetryCallState, wait_random_exponential

from st_lmtx.errors import TeacherConfigError, TeacherError
from st_lmtx.teacher.request_shapes import MalformedResponse

logger = logging.getLogger(__name__)

_LOOPBACK = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def is_transient(error: BaseException) -> bool:
    """Worth another try: rate limits, server errors, timeouts, dropped connections, unreadable bodies."""
    if isinstance(error, openai.APIStatusError):
        return error.status_code in (408, 409, 429) or error.status_code >= 500
    return isinstance(
        error, (openai.APIConnectionError, openai.APIResponseValidationError, MalformedResponse, json.JSONDecodeError)
    )


def is_overload(error: BaseException) -> bool:
    """The server is over its capacity: a 429, a 5xx or a timeout (fewer requests in flight may help)."""
    if isinstance(error, openai.APIStatusError):
        return error.status_code == 429 or error.status_code >= 500
    return isinstance(error, openai.APITimeoutError)


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


class RetryAfterOrBackoff:
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


def resolve_api_key(api_key: str | None, base_url: str | None) -> str | None:
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
        key = resolve_api_key(api_key, base_url)
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


def describe_error(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    if isinstance(error, openai.APIStatusError):
        return f"HTTP {error.status_code}"
    return f"{type(error).__name__}: {str(error)[:200]}"
