"""The endpoint teacher on servers that take a list of prompts (vLLM, llama.cpp's server): graded by default, one
answer token forced to yes or no, the chat template rendered by the server, requests in flight sized to it."""

import asyncio
import logging
import threading
import time

import pytest
from fake_openai_server import FakeOpenAIServer, relevant, render_chat

from st_lmtx.teacher import OpenAITeacher
from st_lmtx.teacher.in_flight import InFlight
from st_lmtx.teacher.request_shapes import server_root, split_rendered

DOCS = [f"Document {i}: wheat exports rose, gold prices fell and crude oil was flat." for i in range(12)]
LABELS = ["Wheat", "Gold", "Crude Oil", "Coffee", "Shipping"]


def judge(server, **kw):
    kw.setdefault("show_progress_bar", False)
    teacher = OpenAITeacher("fake-model", base_url=server.url, **kw)
    return teacher, teacher.judge(DOCS, [LABELS] * len(DOCS))


@pytest.mark.parametrize("kind", ["vllm", "llama.cpp"])
def test_a_default_teacher_is_graded_and_asks_many_pairs_a_request(kind, tmp_path):
    with FakeOpenAIServer(kind=kind) as server:
        teacher, result = judge(server, cache=tmp_path / "c.sqlite")
        log = [e for e in server.log if "doc" in e]
    pairs = len(DOCS) * len(LABELS)
    assert result.usage.pairs == pairs and result.usage.unparseable == 0
    assert all(j.graded for row in result.judgments for j in row) and teacher.graded
    scores = [[round(j.score, 3) for j in row] for row in result.judgments]
    assert scores == [[0.9 if relevant(d, label) else 0.1 for label in LABELS] for d in DOCS]
    # Each pair asked once, in a rendered chat prompt, for one token; several pairs a request.
    assert len(log) == pairs and len({(e["doc"], e["label"]) for e in log}) == pairs
    assert all(e["templated"] and e["max_tokens"] == 1 and e["endpoint"] == "completions" for e in log)
    assert result.usage.calls < pairs / 4 and max(e["batched"] for e in log) > len(LABELS)


def test_the_prompt_is_exactly_what_the_chat_endpoint_renders():
    with FakeOpenAIServer() as server:
        teacher, _ = judge(server)
        texts = [e for e in server.log if "doc" in e]
        traits = teacher._traits[server.url]
    head, middle, tail = traits.template
    for e in texts:
        prompt = head + teacher.prompt.truncate(e["doc"]) + middle + e["label"] + tail
        user = teacher.prompt.render_pointwise(e["doc"], e["label"])
        assert prompt == render_chat([{"role": "user", "content": user}])
    assert split_rendered("a LMTXDOCMARK b LMTXLABELMARK c") == ("a ", " b ", " c")
    assert split_rendered("no marks") is None
    assert server_root("http://h:8000/v1") == server_root("http://h:8000/v1/") == "http://h:8000"


def test_forced_yes_no_leaves_no_unparseable_answer_and_p_yes_unchanged():
    with FakeOpenAIServer() as server:
        server.faults = ["nonsense"] * 3  # the model would say "Maybe": the bias makes it yes or no
        _, forced = judge(server)
    with FakeOpenAIServer(kind="plain") as server:  # no token ids known: nothing forced
        server.faults = ["nonsense"]
        _, free = judge(server, concurrency=1)
    assert forced.usage.unparseable == 0 and free.usage.unparseable == 1
    forced_scores = [j.score for row in forced.judgments for j in row]
    free_scores = [j.score for row in free.judgments for j in row]
    assert forced_scores == pytest.approx(free_scores)


@pytest.mark.parametrize(("mode", "reason"), [("refuse", "refused"), ("ignore", "without logprobs")])
def test_a_server_without_logprobs_is_warned_about_once_and_the_run_goes_on_ungraded(mode, reason, caplog):
    with FakeOpenAIServer(logprobs=mode) as server, caplog.at_level(logging.WARNING):
        teacher, result = judge(server)
    warnings = [r for r in caplog.records if "gives no logprobs" in r.getMessage()]
    assert len(warnings) == 1
    assert not teacher.graded and reason in teacher.ungraded_reason
    assert teacher.describe()["ungraded"] == teacher.ungraded_reason and teacher.describe()["graded"] is False
    assert result.usage.pairs == len(DOCS) * len(LABELS) and not any(j.graded for row in result.judgments for j in row)
    assert [[j.verdict for j in row] for row in result.judgments] == [
        ["yes" if relevant(d, label) else "no" for label in LABELS] for d in DOCS
    ]


def test_no_logprobs_is_ungraded_without_a_warning(caplog):
    with FakeOpenAIServer() as server, caplog.at_level(logging.WARNING):
        teacher, result = judge(server, logprobs=False)
    assert not teacher.graded and teacher.ungraded_reason is None and not caplog.records
    assert {j.score for row in result.judgments for j in row} == {0.0, 1.0}


def test_a_documents_first_label_is_answered_before_its_others_are_sent():
    with FakeOpenAIServer(delay=0.05) as server:
        judge(server)
        log = [e for e in server.log if "doc" in e]
    for doc in DOCS:
        times = sorted(e["time"] for e in log if e["doc"] == doc)
        assert len(times) == len(LABELS) and all(t >= times[0] + 0.045 for t in times[1:]), doc


def test_a_budget_stops_before_a_request_it_cannot_pay_for(tmp_path):
    from st_lmtx.errors import TeacherBudgetExceeded

    with FakeOpenAIServer() as server:
        with pytest.raises(TeacherBudgetExceeded):
            judge(server, cache=tmp_path / "c.sqlite", budget=20)
        asked = len([e for e in server.log if "doc" in e])
        _, result = judge(server, cache=tmp_path / "c.sqlite")
    assert 0 < asked <= 20 and result.usage.cache_hits == asked
    assert result.usage.calls > 0 and result.usage.pairs == len(DOCS) * len(LABELS)


# ------------------------------------------------------------------------------------------ requests in flight


async def _drive(limit: InFlight, serve, requests: int, client_cpu: float = 0.0) -> list[float]:
    """``requests`` requests through ``limit``, as many at once as it lets, each answer then costing the client
    ``client_cpu`` seconds of blocking work (parsing, storing); their latencies."""
    latencies: list[float] = []

    async def one() -> None:
        async with limit.slot() as done:
            started = time.perf_counter()
            failed = await serve()
            latencies.append(time.perf_counter() - started)
            done(pairs=10, failed=failed)
        time.sleep(client_cpu)

    await asyncio.gather(*(one() for _ in range(requests)))
    return latencies


def test_in_flight_grows_on_a_server_with_room_and_stays_low_on_a_one_slot_server():
    async def roomy() -> bool:
        await asyncio.sleep(0.01)
        return False

    limit = InFlight()
    asyncio.run(_drive(limit, roomy, 600))
    assert limit.peak >= 32  # doubling while throughput doubled and latency held

    slot = asyncio.Lock()

    async def one_slot() -> bool:
        async with slot:
            await asyncio.sleep(0.01)
        return False

    alone = asyncio.run(_drive(InFlight(1), one_slot, 50))
    limit = InFlight()
    latencies = asyncio.run(_drive(limit, one_slot, 300))
    assert limit.limit <= 2 and sum(latencies) / len(latencies) <= 1.5 * sum(alone) / len(alone)


def test_in_flight_does_not_take_pipelining_for_room_on_a_one_slot_server():
    # The server in a thread of its own, the client busy between answers: a second request in flight keeps the one
    # slot busy, about a third more answers a second for twice the latency. That is queueing, not room.
    slot = threading.Lock()

    def serve() -> None:
        with slot:
            time.sleep(0.01)

    async def one_slot() -> bool:
        await asyncio.to_thread(serve)
        return False

    alone = asyncio.run(_drive(InFlight(1), one_slot, 40, client_cpu=0.004))
    limit = InFlight()
    latencies = asyncio.run(_drive(limit, one_slot, 200, client_cpu=0.004))
    assert limit.peak <= 4 and sum(latencies) / len(latencies) <= 1.5 * sum(alone) / len(alone)


def test_in_flight_halves_once_on_a_burst_of_overload_and_a_number_fixes_it():
    async def overloaded() -> bool:
        await asyncio.sleep(0.001)
        return True  # a 429

    limit = InFlight(start=64)
    asyncio.run(_drive(limit, overloaded, 64))  # 64 failures of requests sent together: one halving
    assert limit.limit == 32
    fixed = InFlight(8)
    asyncio.run(_drive(fixed, overloaded, 64))
    assert fixed.limit == 8 and fixed.describe() == "8 in flight"
    with pytest.raises(ValueError, match="concurrency"):
        InFlight(0)
