import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter

import pytest
from fake_openai_server import FakeOpenAIServer, relevant

from st_lmtx.errors import TeacherBudgetExceeded, TeacherConfigError, TeacherError
from st_lmtx.teacher import JudgmentCache, OpenAITeacher, OracleTeacher, PromptTemplate, parse_verdict
from st_lmtx.teacher.prompts import PAPER_PROMPT, PROMPTS, p_yes

SECRET = "sk-test-DO-NOT-WRITE-1234567890"
DOCS = [
    "Wheat exports rose as the wheat harvest beat forecasts.",
    "Crude oil stocks fell; refiners bought crude.",
    "The central bank cut interest rates again.",
    "Gold bullion rallied.",
]
CANDIDATES = [
    ["Wheat", "Gold", "Coffee"],
    ["Crude Oil", "Wheat", "Shipping"],
    ["Interest Rates", "Gold"],
    ["Gold", "Coffee"],
]
PAIRS = sum(len(c) for c in CANDIDATES)
ANSWERED = ("ok", "nonsense")


@pytest.fixture()
def fake_server():
    """These tests follow faults, budgets and order request by request: a server that takes one pair a request
    (a hosted API's shape; the prompt-list shape has its own tests in test_endpoint.py)."""
    with FakeOpenAIServer(kind="plain") as server:
        yield server


def teacher(server, cache, **kw):
    kw.setdefault("timeout", 1.0)
    kw.setdefault("backoff_multiplier", 0.01)
    kw.setdefault("backoff_max", 0.05)
    kw.setdefault("show_progress_bar", False)
    kw.setdefault("concurrency", 1)  # these tests follow faults and budgets request by request
    return OpenAITeacher("fake-model", base_url=kw.pop("base_url", server.url), api_key=SECRET, cache=cache, **kw)


def answered_pairs(server) -> Counter:
    return Counter((e["doc"], e["label"]) for e in server.log if e["outcome"] in ANSWERED and "doc" in e)


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ("Yes", "yes"),
        ("yes.", "yes"),
        ("**Yes**", "yes"),
        (" YES, it is", "yes"),
        ("No, it is not", "no"),
        ("no", "no"),
        ("Answer: no", "no"),
        ("Nope", "unparseable"),
        ("Not relevant", "unparseable"),
        ("Maybe", "unparseable"),
        ("", "unparseable"),
        (None, "unparseable"),
        ("yesterday", "unparseable"),
    ],
)
def test_parse_verdict(answer, verdict):
    assert parse_verdict(answer) == verdict


def test_p_yes():
    import math

    alts = [("Yes", math.log(0.5)), (" yes", math.log(0.1)), ("No", math.log(0.3)), ("▁no", math.log(0.1))]
    assert p_yes(alts) == pytest.approx(0.6)
    assert p_yes([("Maybe", 0.0)]) is None


def test_prompt_template_checks():
    with pytest.raises(ValueError, match="put \\{doc\\} first"):
        PromptTemplate(pointwise='Is "{label}" relevant to "{doc}"?')
    with pytest.raises(ValueError, match="lacks"):
        PromptTemplate(pointwise="{doc} only")
    p = PromptTemplate.named("reference", max_doc_words=3)
    assert (
        p.render_pointwise("a {b} c d e", "L")
        == 'document = "a {b} c". Is the tag "L" relevant to the document? answer yes or no'
    )


def test_faults_are_retried_and_every_pair_is_judged_once(fake_server, tmp_path, caplog):
    fake_server.faults = ["429", "500", "hang", "drop", "malformed", "nonsense"]
    cache = tmp_path / "cache.sqlite"
    with caplog.at_level(logging.DEBUG):
        result = teacher(fake_server, cache).judge(DOCS, CANDIDATES)
    verdicts = [[j.verdict for j in row] for row in result.judgments]
    expected = [["yes" if relevant(d, label) else "no" for label in c] for d, c in zip(DOCS, CANDIDATES)]
    # The nonsense answer is the first pair that got through: it is unparseable, never a silent "no".
    assert verdicts[0][0] == "unparseable"
    verdicts[0][0] = expected[0][0]
    assert verdicts == expected
    assert result.usage.retries == 5 and result.usage.unparseable == 1 and result.usage.calls == PAIRS
    # each pair was answered by the server exactly once, and sits in the cache exactly once
    assert set(answered_pairs(fake_server).values()) == {1} and len(answered_pairs(fake_server)) == PAIRS
    assert JudgmentCache(cache).count() == PAIRS
    # Retry-After: 1 was honoured between the 429 and the next attempt
    times = [e["time"] for e in fake_server.log]
    assert times[1] - times[0] >= 0.9
    # a second run asks nothing
    before = len(fake_server.log)
    again = teacher(fake_server, cache).judge(DOCS, CANDIDATES)
    assert len(fake_server.log) == before and again.usage.calls == 0 and again.usage.cache_hits == PAIRS
    assert [[j.verdict for j in row] for row in again.judgments][1:] == expected[1:]
    # the key went to the server, and nowhere else
    assert fake_server.log[-1]["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in caplog.text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


def test_exhausted_retries_raise_and_keep_answers(fake_server, tmp_path):
    fake_server.faults = [None, None] + ["500"] * 10
    cache = tmp_path / "c.sqlite"
    with pytest.raises(TeacherError, match="after 3 attempts: HTTP 500"):
        teacher(fake_server, cache, max_retries=2).judge(DOCS, CANDIDATES)
    assert JudgmentCache(cache).count() == 2  # the two answers before the outage are kept
    fake_server.faults = []
    result = teacher(fake_server, cache).judge(DOCS, CANDIDATES)
    assert result.usage.cache_hits == 2 and result.usage.calls == PAIRS - 2


def test_client_errors_are_not_retried(fake_server, tmp_path):
    with pytest.raises(TeacherError, match="HTTP 400"):
        teacher(fake_server, tmp_path / "c.sqlite", prompt=PromptTemplate(pointwise='{doc} ? "{label}"')).judge(
            DOCS, CANDIDATES
        )
    assert len(fake_server.log) == 1


def test_logprobs_give_p_yes_on_chat_and_completions(fake_server, tmp_path):
    for kind in ("chat", "completion"):
        t = teacher(fake_server, tmp_path / f"{kind}.sqlite", prompt=PromptTemplate(kind=kind))  # graded by default
        result = t.judge(DOCS[:1], CANDIDATES[:1])
        scores = [round(j.score, 3) for j in result.judgments[0]]
        assert scores == [0.9, 0.1, 0.1], kind
        assert all(j.graded for j in result.judgments[0]) and t.graded and t.ungraded_reason is None
    completions = [e for e in fake_server.log if e["endpoint"] == "completions"]
    # A plain completion prompt goes as it is, a list of them a request (the document's first label, then the rest).
    assert len(completions) == 3 and completions[0]["text"].endswith("\nAnswer:")
    assert [e["batched"] for e in completions] == [1, 2, 2]


def test_graded_and_ungraded_answers_keep_their_own_cache_namespaces(fake_server, tmp_path):
    cache = tmp_path / "c.sqlite"
    plain = teacher(fake_server, cache, logprobs=False).judge(DOCS[:1], CANDIDATES[:1])
    assert [j.score for j in plain.judgments[0]] == [1.0, 0.0, 0.0]
    assert not any(j.graded for j in plain.judgments[0])
    graded = teacher(fake_server, cache).judge(DOCS[:1], CANDIDATES[:1])
    assert graded.usage.calls == 3 and graded.judgments[0][0].score == pytest.approx(0.9)
    # Each setting is served its own answers from the cache, and asks nothing more.
    assert teacher(fake_server, cache, logprobs=False).judge(DOCS[:1], CANDIDATES[:1]).usage.calls == 0
    assert teacher(fake_server, cache).judge(DOCS[:1], CANDIDATES[:1]).usage.calls == 0
    assert teacher(fake_server, cache).namespace != teacher(fake_server, cache, logprobs=False).namespace
    assert len(JudgmentCache(cache).namespaces()) == 2


def test_budget_stops_cleanly_and_resumes(fake_server, tmp_path):
    cache = tmp_path / "c.sqlite"
    with pytest.raises(TeacherBudgetExceeded, match="budget of 4 pairs"):
        teacher(fake_server, cache, budget=4, concurrency=8).judge(DOCS, CANDIDATES)
    # Requests go out concurrently, yet exactly the 4 the budget pays for were sent and answered, none cancelled.
    assert JudgmentCache(cache).count() == 4 and len(fake_server.log) == 4
    result = teacher(fake_server, cache).judge(DOCS, CANDIDATES)
    assert result.usage.calls == PAIRS - 4 and max(answered_pairs(fake_server).values()) == 1


def test_documents_go_out_in_order_and_spread_over_servers(fake_server, tmp_path):
    with FakeOpenAIServer(kind="plain") as second:
        teacher(fake_server, tmp_path / "c.sqlite", base_url=[fake_server.url, second.url]).judge(DOCS, CANDIDATES)
        first_docs = [e["doc"] for e in fake_server.log]
        second_docs = [e["doc"] for e in second.log]
    assert set(first_docs) == {DOCS[0], DOCS[2]} and set(second_docs) == {DOCS[1], DOCS[3]}
    # a document's requests are consecutive: the server's prefix cache sees the same document back to back
    assert first_docs == [DOCS[0]] * 3 + [DOCS[2]] * 2


def test_concurrency_judges_everything_once(tmp_path):
    with FakeOpenAIServer(delay=0.05, kind="plain") as server:
        t = teacher(server, tmp_path / "c.sqlite", concurrency=4)
        result = t.judge(DOCS, CANDIDATES)
    assert result.usage.calls == PAIRS and set(answered_pairs(server).values()) == {1}
    assert 1 < server.max_in_flight <= 4  # requests overlapped, within the limit (counted, not timed)


def test_default_concurrency_sends_a_documents_labels_together_after_its_first(tmp_path):
    docs = [f"Document {i} about wheat exports and gold." for i in range(6)]
    candidates = [["Wheat", "Gold", "Coffee", "Sugar", "Shipping"]] * len(docs)
    with FakeOpenAIServer(delay=0.05, kind="plain") as server:
        t = OpenAITeacher("fake-model", base_url=server.url, cache=tmp_path / "c.sqlite", show_progress_bar=False)
        result = t.judge(docs, candidates)
    assert t.concurrency == "auto" and result.usage.calls == 30 and set(answered_pairs(server).values()) == {1}
    assert server.max_in_flight > 2  # sized to the server: several documents' requests in flight at once
    # A document's first request is answered before its other labels go out, so they find it in the prefix cache.
    for doc in docs:
        times = sorted(e["time"] for e in server.log if e.get("doc") == doc)
        assert len(times) == 5 and all(x >= times[0] + 0.045 for x in times[1:]), doc


def test_compact_prompt_asks_first_and_ends_with_the_label(fake_server, tmp_path):
    assert PromptTemplate().name == "compact" and PromptTemplate.named("reference").pointwise == PAPER_PROMPT
    assert list(PROMPTS) == ["compact", "reference"] and PromptTemplate(pointwise="{doc}: {label}?").name == "custom"
    for gone in ("short", "delimited", "prefilled"):
        with pytest.raises(ValueError, match=f"unknown prompt '{gone}': use one of compact, reference"):
            PromptTemplate.named(gone)
    result = teacher(fake_server, tmp_path / "c.sqlite").judge(DOCS[:1], CANDIDATES[:1])
    text = fake_server.log[0]["text"]
    assert text.startswith("Is the tag relevant to the document?") and text.endswith('Tag: "Wheat"')
    assert [j.verdict for j in result.judgments[0]] == ["yes", "no", "no"]
    head, middle, tail = PromptTemplate.named("reference").pointwise_parts()
    assert (head, middle, tail) == ('document = "', '". Is the tag "', '" relevant to the document? answer yes or no')


def test_sigkill_mid_run_repeats_no_stored_call(tmp_path):
    docs = [f"Document {i} about wheat and gold prices." for i in range(12)]
    candidates = [["Wheat", "Gold", "Coffee"]] * len(docs)
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"docs": docs, "candidates": candidates}))
    cache = tmp_path / "c.sqlite"
    script = textwrap.dedent(f"""
        import json, sys
        from st_lmtx.teacher import OpenAITeacher
        job = json.load(open({str(spec)!r}))
        OpenAITeacher("fake-model", base_url=sys.argv[1], api_key="x", cache={str(cache)!r}, concurrency=1,
                      show_progress_bar=False).judge(job["docs"], job["candidates"])
    """)
    with FakeOpenAIServer(delay=0.1, kind="plain") as server:
        proc = subprocess.Popen([sys.executable, "-c", script, server.url])
        deadline = time.monotonic() + 60
        while len(answered_pairs(server)) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        stored = JudgmentCache(cache).count()
        assert 8 <= stored < len(docs) * 3
        answered_before = sum(answered_pairs(server).values())
        assert answered_before - stored <= 1  # at most the call in flight was lost
        result = OpenAITeacher(
            "fake-model", base_url=server.url, api_key="x", cache=cache, show_progress_bar=False
        ).judge(docs, candidates)
        counts = answered_pairs(server)
    assert result.usage.cache_hits == stored
    assert result.usage.calls == len(docs) * 3 - stored
    assert sum(counts.values()) - len(counts) <= 1  # a pair answered twice only if it was in flight at the kill
    assert JudgmentCache(cache).count() == len(docs) * 3


def test_oracle_flips_a_fraction_deterministically(toy_lfxmc):
    from st_lmtx import load_lfxmc

    labels, docs = load_lfxmc(toy_lfxmc, "trn")
    cands = [labels.texts] * len(docs)
    exact = OracleTeacher(labels, docs).judge(docs.texts, cands)
    assert [[j.verdict == "yes" for j in row] for row in exact.judgments] == [
        [i in t for i in range(len(labels))] for t in docs.targets
    ]
    noisy = OracleTeacher(labels, docs, flip_fraction=0.25, seed=1)
    a = [[j.verdict for j in row] for row in noisy.judge(docs.texts, cands).judgments]
    b = [
        [j.verdict for j in row]
        for row in OracleTeacher(labels, docs, flip_fraction=0.25, seed=1).judge(docs.texts, cands).judgments
    ]
    flips = sum(x != y.verdict for row, erow in zip(a, exact.judgments) for x, y in zip(row, erow))
    assert a == b and 0.1 < flips / (len(docs) * len(labels)) < 0.4
    assert OracleTeacher(labels, docs).describe()["model"] == "oracle"


def _oracle_corpus(n_docs=50, n_labels=40):
    """A hand-made corpus: document i has labels i % n, (3i + 1) % n and (7i + 2) % n (2-3 true pairs a doc)."""
    from st_lmtx.inputs import DocumentSet, LabelSet

    labels = LabelSet([f"L{j}" for j in range(n_labels)], [f"Label {j}" for j in range(n_labels)])
    targets = [sorted({i % n_labels, (3 * i + 1) % n_labels, (7 * i + 2) % n_labels}) for i in range(n_docs)]
    docs = DocumentSet(texts=[f"Document number {i} about several topics." for i in range(n_docs)], targets=targets)
    return labels, docs


def _oracle_answers(teacher, docs, labels):
    """{(doc index, label index): said yes} over every pair."""
    rows = teacher.judge(docs.texts, [labels.texts] * len(docs)).judgments
    return {(i, j): judgment.is_yes for i, row in enumerate(rows) for j, judgment in enumerate(row)}


def test_oracle_flip_towards_yes_no_both():
    labels, docs = _oracle_corpus()
    truth = {(i, j): j in docs.targets[i] for i in range(len(docs)) for j in range(len(labels))}
    positives = [pair for pair, true in truth.items() if true]
    negatives = [pair for pair, true in truth.items() if not true]
    assert len(positives) > 100 and len(negatives) > 1800

    def answers(**kw):
        return _oracle_answers(OracleTeacher(labels, docs, seed=3, **kw), docs, labels)

    lenient = answers(flip_fraction=0.4, flip_towards="yes")
    assert all(lenient[pair] for pair in positives)  # a true label is never flipped to "no"
    assert abs(sum(lenient[pair] for pair in negatives) / len(negatives) - 0.4) < 0.05
    assert lenient == answers(flip_fraction=0.4, flip_towards="yes")  # deterministic across instances

    strict = answers(flip_fraction=0.4, flip_towards="no")
    assert not any(strict[pair] for pair in negatives)  # a false label is never flipped to "yes"
    assert abs(sum(not strict[pair] for pair in positives) / len(positives) - 0.4) < 0.05
    assert strict == answers(flip_fraction=0.4, flip_towards="no")

    # "both" is the behaviour from before the option: the default, flipping either way at the same share ...
    both = answers(flip_fraction=0.4, flip_towards="both")
    assert both == answers(flip_fraction=0.4)
    assert abs(sum(both[p] != truth[p] for p in truth) / len(truth) - 0.4) < 0.05
    # ... and the one-sided modes flip exactly its flipped pairs of their side.
    assert {p for p in truth if lenient[p] != truth[p]} == {p for p in negatives if both[p] != truth[p]}
    assert {p for p in truth if strict[p] != truth[p]} == {p for p in positives if both[p] != truth[p]}
    assert answers(flip_towards="yes") == answers(flip_towards="no") == truth  # nothing to flip at 0


def test_oracle_both_keeps_the_answers_names_and_cache_namespace_of_before():
    import hashlib

    from st_lmtx.teacher.cache import namespace_of

    labels, docs = _oracle_corpus(10, 8)
    teacher = OracleTeacher(labels, docs, flip_fraction=0.2, seed=1)
    explicit = OracleTeacher(labels, docs, flip_fraction=0.2, seed=1, flip_towards="both")
    # The configuration (the cache namespace and the run fingerprint) is exactly the one from before the option.
    before = {"backend": "oracle", "model": "oracle-flip0.2", "flip_fraction": 0.2, "seed": 1}
    assert teacher.config() == explicit.config() == before
    assert teacher.namespace == explicit.namespace == namespace_of(before)
    assert teacher.model_name == "oracle-flip0.2" and OracleTeacher(labels, docs).model_name == "oracle"
    # The answers are the formula from before: truth XOR (hash of seed, doc, label below the fraction).
    for (i, j), yes in _oracle_answers(explicit, docs, labels).items():
        doc, label = docs.texts[i], labels.texts[j]
        digest = hashlib.sha256(f"1\0{doc}\0{label}".encode()).digest()
        assert yes == ((j in docs.targets[i]) != (int.from_bytes(digest[:8], "big") / 2**64 < 0.2))

    lenient = OracleTeacher(labels, docs, flip_fraction=0.4, flip_towards="yes")
    strict = OracleTeacher(labels, docs, flip_fraction=0.4, flip_towards="no")
    assert lenient.model_name == "oracle-flip0.4-yes" and strict.model_name == "oracle-flip0.4-no"
    assert lenient.config()["flip_towards"] == "yes" and strict.config()["flip_towards"] == "no"
    # Same fraction and seed, another direction: another namespace, so cached answers never mix.
    both = OracleTeacher(labels, docs, flip_fraction=0.4)
    assert len({lenient.namespace, strict.namespace, both.namespace}) == 3
    zero = OracleTeacher(labels, docs, flip_towards="yes")
    assert zero.namespace != OracleTeacher(labels, docs).namespace

    with pytest.raises(ValueError, match="'both', 'yes', 'no'"):
        OracleTeacher(labels, docs, flip_fraction=0.4, flip_towards="up")


def test_oracle_spec_strings():
    from st_lmtx.teacher import make_teacher

    labels, docs = _oracle_corpus(20, 10)

    def build(spec):
        return make_teacher(spec, labels=labels, documents=docs, show_progress_bar=False)

    lenient = build("oracle:0.4:yes")
    assert isinstance(lenient, OracleTeacher)
    assert (lenient.flip_fraction, lenient.flip_towards, lenient.model_name) == (0.4, "yes", "oracle-flip0.4-yes")
    direct = OracleTeacher(labels, docs, flip_fraction=0.4, flip_towards="yes")
    assert lenient.config() == direct.config()
    assert _oracle_answers(lenient, docs, labels) == _oracle_answers(direct, docs, labels)
    assert (
        build("oracle:0.3:no").config() == OracleTeacher(labels, docs, flip_fraction=0.3, flip_towards="no").config()
    )
    # The specs from before the option build the teachers they built then.
    before = OracleTeacher(labels, docs, flip_fraction=0.2).config()
    assert build("oracle:0.2").config() == build("oracle:0.2:both").config() == before
    assert build("oracle").config() == OracleTeacher(labels, docs).config()

    for bad, why in [
        ("oracle:0.4:up", "'up' is not a flip direction"),
        ("oracle:abc", "'abc' is not a fraction"),
        ("oracle:1.5", r"in \[0, 1\]"),
        ("oracle:0.4:yes:1", r"oracle:FRACTION:both\|yes\|no"),
        ("oracle:", "'' is not a fraction"),
    ]:
        with pytest.raises(TeacherConfigError, match=why):
            build(bad)
    with pytest.raises(TeacherConfigError, match="unknown teacher"):
        build("oracles")


def test_a_key_sent_over_plain_http_to_another_host_is_warned_once(monkeypatch, caplog):
    from st_lmtx.teacher import endpoints

    endpoints._warn_clear_text.cache_clear()
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with caplog.at_level(logging.WARNING, logger="st_lmtx"):
        for url in ["https://api.example.com/v1", "http://127.0.0.1:8000/v1", "http://127.0.0.2:8000/v1"]:
            OpenAITeacher("m", base_url=url, api_key=SECRET)._client(url)
        assert caplog.text == ""  # https, or a server on this machine: nothing to read on the way
        for _ in range(2):
            OpenAITeacher("m", base_url="http://10.9.8.7:8000/v1", api_key=SECRET)._client("http://10.9.8.7:8000/v1")
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["The API key is sent unencrypted to 10.9.8.7"]
    assert SECRET not in caplog.text
    # No key at all: a loopback server gets a placeholder, another host none (the openai client then says so).
    assert endpoints.resolve_api_key(None, "http://127.0.0.2:8000/v1") == "no-key"
    assert endpoints.resolve_api_key(None, "http://10.9.8.7:8000/v1") is None
