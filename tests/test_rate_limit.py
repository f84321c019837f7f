"""Client-side rate limits of endpoint teachers (``rpm``, ``tpm``), counted on the loopback server's side (a
server shaped like a hosted API: a pair a request)."""

import asyncio
import logging
import time

import pytest
from fake_openai_server import FakeOpenAIServer

from st_lmtx.errors import ArgumentsError, TeacherError
from st_lmtx.teacher import JudgmentCache, OpenAITeacher, make_teacher
from st_lmtx.teacher.rate_limit import RateLimiter, estimate_tokens, window_margin

WINDOW = 1.0  # seconds: the rate window of these tests, so that they take seconds, not minutes
LABELS = ["Wheat", "Gold", "Coffee", "Shipping", "Sugar"]


def docs(n: int, tag: str = "") -> list[str]:
    # Same length each, so every request has the same token estimate.
    return [f"Document {tag}{i:03d} about wheat exports and gold prices." for i in range(n)]


def limited(url, cache, **kw) -> OpenAITeacher:
    kw.setdefault("concurrency", 8)
    kw.setdefault("timeout", 1.0)  # shorter than the waits: waiting for the limiter is no request timeout
    kw.setdefault("backoff_multiplier", 0.01)
    kw.setdefault("backoff_max", 0.05)
    return OpenAITeacher(
        "fake-model", base_url=url, api_key="x", cache=cache, rate_window=WINDOW, show_progress_bar=False, **kw
    )


def most_in_a_window(times: list[float], window: float, weights: list[float] | None = None) -> float:
    """The most requests (or weight) any closed window of ``window`` seconds holds, wherever it starts."""
    events = sorted(zip(times, weights or [1.0] * len(times)))
    best = total = 0.0
    first = 0
    for t, w in events:
        total += w
        while events[first][0] < t - window:
            total -= events[first][1]
            first += 1
        best = max(best, total)
    return best


def test_the_window_count_helper():
    assert most_in_a_window([0.0, 0.5, 1.0, 1.01, 2.2], 1.0) == 3  # 0, 0.5, 1.0: the window is closed
    assert most_in_a_window([0.0, 0.5, 1.0], 0.99) == 2
    assert most_in_a_window([0.0, 0.5, 1.0], 1.0, [3, 4, 5]) == 12


def test_rpm_holds_in_every_window_over_all_urls(tmp_path):
    rpm, n = 5, 20
    with FakeOpenAIServer(kind="plain") as a, FakeOpenAIServer(kind="plain") as b:
        t = limited([a.url, b.url], tmp_path / "c.sqlite", rpm=rpm)
        start = time.monotonic()
        result = t.judge(docs(n // len(LABELS)), [LABELS] * (n // len(LABELS)))
        elapsed = time.monotonic() - start
        times = [e["time"] for e in a.log + b.log]
    assert result.usage.calls == n and len(times) == n and len(a.log) == len(b.log) == n // 2
    assert result.usage.retries == 0  # waiting for the limiter (over the 1 s timeout) is no request timeout
    # One limiter for both URLs: per-URL limiters would let 2 x rpm through in a window.
    assert most_in_a_window(times, WINDOW) == rpm
    # Request i and i + rpm are more than a window (plus the margin) apart.
    span = WINDOW + window_margin(WINDOW)
    assert elapsed >= (n - 1) // rpm * span
    assert t.rate_limiter.requests == n and t.rate_limiter.waited > 0


def test_tpm_holds_in_every_window(tmp_path):
    with FakeOpenAIServer(kind="plain") as server:
        probe = limited(server.url, tmp_path / "c.sqlite", tpm=10_000)
        text = probe.prompt.render_pointwise(docs(1)[0], "Wheat")
        per_request = probe._estimate_tokens(text)
        assert per_request == estimate_tokens(text) + 1  # a one-token answer
        tpm = int(2.5 * per_request)  # two requests a window, by tokens (rpm unset)
        t = limited(server.url, tmp_path / "c.sqlite", tpm=tpm)
        result = t.judge(docs(2, "t"), [LABELS[:3]] * 2)
        entries = list(server.log)
    assert result.usage.calls == 6 and len(entries) == 6
    estimates = [t._estimate_tokens(e["text"]) for e in entries]
    assert max(estimates) <= per_request + 1  # the documents' numbers differ, not their lengths
    times = [e["time"] for e in entries]
    assert most_in_a_window(times, WINDOW, estimates) <= tpm
    assert most_in_a_window(times, WINDOW) == 2


def test_retries_pass_the_limiter_and_retry_after_still_holds(tmp_path):
    rpm = 4
    with FakeOpenAIServer(retry_after="1", kind="plain") as server:
        server.faults = ["429", "500"]
        t = limited(server.url, tmp_path / "c.sqlite", rpm=rpm, concurrency=1)
        result = t.judge(docs(2, "r"), [LABELS[:3]] * 2)
        entries = list(server.log)
    pairs = 2 * 3
    assert result.usage.retries == 2 and result.usage.calls == pairs
    # Every attempt is a request: the failed ones are counted and the windows hold with them.
    assert t.rate_limiter.requests == len(entries) == pairs + 2
    assert most_in_a_window([e["time"] for e in entries], WINDOW) <= rpm
    # The server's Retry-After: 1 was waited before the retry, limiter or not.
    assert entries[1]["time"] - entries[0]["time"] >= 0.9


def test_rpm_and_tpm_together_are_counted_at_one_instant():
    limiter = RateLimiter(rpm=3, tpm=100, window=0.3)
    released: list[tuple[float, int]] = []

    async def request(tokens: int) -> None:
        await limiter.acquire(tokens)
        released.append((time.monotonic(), tokens))

    async def main() -> None:
        await asyncio.gather(*[request(tokens) for tokens in [10, 60, 10, 30, 10, 10, 90, 5, 5]])

    asyncio.run(main())
    times = [t for t, _ in released]
    assert most_in_a_window(times, 0.3) <= 3
    assert most_in_a_window(times, 0.3, [tokens for _, tokens in released]) <= 100
    # First come, first served: the 90-token request is not overtaken by the small ones queued after it.
    assert [tokens for _, tokens in released] == [10, 60, 10, 30, 10, 10, 90, 5, 5]


def test_large_token_limits_are_counted_in_coarser_units_without_losing_the_guarantee():
    limiter = RateLimiter(tpm=1_000_000, window=0.2)
    assert limiter._token_unit == 10 and limiter._tokens.amount == 100_000

    async def main() -> list[float]:
        times = []
        for _ in range(3):  # 3 x 400,001 tokens: 40,001 units each, so only two fit a window
            await limiter.acquire(400_001)
            times.append(time.monotonic())
        return times

    times = asyncio.run(main())
    assert times[1] - times[0] < 0.1 and times[2] - times[0] > 0.2


def test_limits_are_validated_and_a_request_over_the_token_limit_is_an_error(fake_server, tmp_path):
    for kwargs, message in [
        ({"rpm": 0}, "rpm must be a positive whole number"),
        ({"rpm": -3}, "rpm must be a positive whole number"),
        ({"rpm": 1.5}, "rpm must be a positive whole number"),
        ({"tpm": 0}, "tpm must be a positive whole number"),
        ({"tpm": "1000"}, "tpm must be a positive whole number"),
        ({"rpm": 10, "rate_window": 0}, "rate_window must be a positive number"),
    ]:
        with pytest.raises(ValueError, match=message):
            OpenAITeacher("fake-model", base_url=fake_server.url, **kwargs)
    assert OpenAITeacher("m", base_url=fake_server.url, rpm=60.0).rate_limiter.rpm == 60
    assert OpenAITeacher("m", base_url=fake_server.url).rate_limiter is None  # no limits, no limiter
    t = limited(fake_server.url, tmp_path / "c.sqlite", tpm=20)
    with pytest.raises(TeacherError, match="exceeds the token limit of 20 per 1 s"):
        t.judge(docs(1), [LABELS])
    assert fake_server.log == []  # nothing was sent


def test_rate_limits_are_not_part_of_the_cache_key(fake_server, tmp_path):
    cache = tmp_path / "c.sqlite"
    first = limited(fake_server.url, cache, rpm=1000, tpm=1_000_000)
    first.judge(docs(2), [LABELS] * 2)
    plain = limited(fake_server.url, cache)
    assert first.config() == plain.config() and first.namespace == plain.namespace
    again = plain.judge(docs(2), [LABELS] * 2)
    assert again.usage.calls == 0 and again.usage.cache_hits == 10 and JudgmentCache(cache).count() == 10
    assert first.describe()["rpm"] == 1000 and first.describe()["tpm"] == 1_000_000
    assert "rpm" not in plain.describe()


def test_cli_and_factory_options(fake_server, toy_lfxmc, capsys, caplog):
    from st_lmtx import load_lfxmc
    from st_lmtx.cli import _teacher, build_parser

    parser = build_parser()
    args = parser.parse_args(
        ["judge", "--teacher", fake_server.url, "--teacher-model", "fake-model", "--rpm", "60", "--tpm", "90000"]
    )
    with _teacher(args, None) as teacher:
        assert (teacher.rate_limiter.rpm, teacher.rate_limiter.tpm, teacher.rate_limiter.window) == (60, 90_000, 60.0)
    args = parser.parse_args(["judge", "--teacher", fake_server.url, "--teacher-model", "fake-model"])
    with _teacher(args, None) as teacher:
        assert teacher.rate_limiter is None
    # Out of range: TeacherArguments refuses it (the command prints it as one line, exit 2) before any teacher
    for bad, message in ((["--rpm", "0"], "rpm must be >= 1; got 0"), (["--tpm", "-1"], "tpm must be >= 1; got -1")):
        with pytest.raises(ArgumentsError, match=message) as error:
            _teacher(
                parser.parse_args(["judge", "--teacher", fake_server.url, "--teacher-model", "fake-model", *bad]), None
            )
        assert error.value.exit_code == 2
    # Not a number: argparse's usage error
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["judge", "--rpm", "ten"])
    assert exit_info.value.code == 2
    assert "--rpm: invalid int value: 'ten'" in capsys.readouterr().err
    # A teacher that sends no requests drops the limits, and says so.
    labels, documents = load_lfxmc(toy_lfxmc, "trn")
    with caplog.at_level(logging.WARNING):
        oracle = make_teacher("oracle", labels=labels, documents=documents, rpm=60, show_progress_bar=False)
    assert oracle.describe()["model"] == "oracle" and "ignored" in caplog.text
