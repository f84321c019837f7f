"""The teacher's answers as data: export, import, checks, the Dataset view and the CLI."""

import gzip
import hashlib
import json

import pytest
from fake_openai_server import FakeOpenAIServer

from st_lmtx.cli import main
from st_lmtx.errors import JudgmentsFileError
from st_lmtx.teacher import JudgmentCache, OpenAITeacher, import_judgments, load_judgments

DOCS = ["Wheat exports rose as the wheat harvest beat forecasts.", "Gold bullion rallied; gold miners gained."]
CANDIDATES = [["Wheat", "Gold", "Coffee"], ["Gold", "Wheat"]]
PAIRS = 5


def endpoint_teacher(server, cache, model="fake-model", **kw):
    return OpenAITeacher(model, base_url=server.url, cache=cache, show_progress_bar=False, logprobs=True, **kw)


@pytest.fixture()
def exported(tmp_path):
    """A judgments file of 5 answers from the loopback server, and the answers themselves."""
    with FakeOpenAIServer() as server:
        result = endpoint_teacher(server, tmp_path / "a.sqlite").judge(DOCS, CANDIDATES)
        teacher = endpoint_teacher(server, tmp_path / "a.sqlite")
        path = tmp_path / "judgments.jsonl.gz"
        assert teacher.export_judgments(path) == PAIRS
    return path, [[(j.verdict, j.score) for j in row] for row in result.judgments]


def test_export_import_then_a_run_makes_no_teacher_call(tmp_path, exported):
    path, answers = exported
    with FakeOpenAIServer() as server:
        teacher = endpoint_teacher(server, tmp_path / "b.sqlite")
        report = teacher.import_judgments(path)
        assert (report.rows, report.added, report.models) == (PAIRS, PAIRS, ["fake-model"])
        result = teacher.judge(DOCS, CANDIDATES)
        assert server.log == []  # nothing reached the server
    assert result.usage.calls == 0 and result.usage.cache_hits == PAIRS
    assert [[(j.verdict, j.score) for j in row] for row in result.judgments] == answers
    # importing again adds nothing and changes nothing
    assert teacher.import_judgments(path).added == 0 and teacher.cache.count() == PAIRS


def test_what_answers_cost_travels_with_them(tmp_path):
    """Each answer is stored with the teacher seconds it cost; a cached or imported answer reports that cost, so
    a run resumed in another session, or fed from another machine's answers, can still tell its teacher time."""
    with FakeOpenAIServer(delay=0.05, kind="plain") as server:  # a pair a request
        teacher = endpoint_teacher(server, tmp_path / "a.sqlite", concurrency=1)
        first = teacher.judge(DOCS, CANDIDATES)
        n, stored = teacher.cache.cost(teacher.namespace)
        assert n == PAIRS and stored >= PAIRS * 0.05  # one request a pair, 50 ms each at least
        assert stored <= first.usage.seconds  # the answers' costs add up to the call's time, never more
        again = teacher.judge(DOCS, CANDIDATES)
        assert again.usage.calls == 0 and again.usage.cached_seconds == pytest.approx(stored)
        path = tmp_path / "j.jsonl.gz"
        teacher.export_judgments(path)
    assert sum(load_judgments(path)["seconds"]) == pytest.approx(stored, abs=1e-3)
    other = JudgmentCache(tmp_path / "b.sqlite")
    import_judgments(other, path)
    assert other.cost()[1] == pytest.approx(stored, abs=1e-3)
    # the column is required: a file without it is refused whole, and nothing is imported
    old = _rewrite(
        path, lambda ls: [json.dumps({k: v for k, v in json.loads(x).items() if k != "seconds"}) for x in ls]
    )
    third = JudgmentCache(tmp_path / "c.sqlite")
    with pytest.raises(JudgmentsFileError, match=r"edited.jsonl:1: missing seconds; nothing was imported"):
        import_judgments(third, old)
    assert third.count() == 0 and third.cost() == (0, 0.0)


def test_file_holds_hashes_not_texts_and_reads_as_a_dataset(exported):
    path, _ = exported
    raw = gzip.decompress(path.read_bytes()).decode()
    assert "Wheat exports rose" not in raw  # documents are hashed, never written
    rows = [json.loads(line) for line in raw.splitlines()]
    assert {r["doc_sha256"] for r in rows} == {hashlib.sha256(d.encode()).hexdigest() for d in DOCS}
    assert json.loads(rows[0]["teacher"])["model"] == "fake-model" and "127.0.0.1" not in raw
    dataset = load_judgments(path)
    assert dataset.num_rows == PAIRS and set(dataset.column_names) >= {"doc_sha256", "label", "verdict", "score"}
    assert sorted(dataset["verdict"]) == ["no", "no", "no", "yes", "yes"]
    assert sorted(dataset["score"]) == pytest.approx([0.1, 0.1, 0.1, 0.9, 0.9])  # the fake server's p(yes)


def _rewrite(path, edit):
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    out = path.with_name("edited.jsonl")
    out.write_text("\n".join(edit(lines)) + "\n")
    return out


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda ls: ls[:2] + ["{not json"] + ls[2:], r"edited.jsonl:3: malformed JSON"),
        (lambda ls: ls + ['["a list"]'], r":6: expected a JSON object"),
        (
            lambda ls: (
                [
                    ls[0]
                    .replace('"verdict": "yes"', '"verdict": "maybe"')
                    .replace('"verdict": "no"', '"verdict": "maybe"')
                ]
                + ls[1:]
            ),
            r":1: verdict 'maybe'",
        ),
        (
            lambda ls: ls[:-1] + [ls[-1].replace('"score": ', '"score": 7.5, "x": ')],
            r":5: score 7.5 is not in \[0, 1\]",
        ),
        (lambda ls: [ls[0].replace('"doc_sha256": "', '"doc_sha256": "zz')] + ls[1:], r":1: doc_sha256"),
        (lambda ls: [ls[0].replace("fake-model", "other-model")] + ls[1:], r":1: namespace .* does not match"),
        (
            lambda ls: [json.dumps({k: v for k, v in json.loads(ls[0]).items() if k != "label"})] + ls[1:],
            r":1: missing label",
        ),
        (lambda ls: [ls[0].replace('"seconds": ', '"seconds": -1, "x": ')] + ls[1:], r":1: seconds -1"),
        (lambda ls: [], r"holds no judgments"),
    ],
)
def test_a_malformed_file_imports_nothing(tmp_path, exported, edit, message):
    path, _ = exported
    bad = _rewrite(path, edit)
    cache = JudgmentCache(tmp_path / "c.sqlite")
    with pytest.raises(JudgmentsFileError, match=message):
        import_judgments(cache, bad)
    assert cache.count() == 0


def test_a_truncated_gzip_file_imports_nothing(tmp_path, exported):
    path, _ = exported
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(path.read_bytes()[:-20])
    cache = JudgmentCache(tmp_path / "c.sqlite")
    with pytest.raises(JudgmentsFileError, match="cut.jsonl.gz: unreadable .*; nothing was imported"):
        import_judgments(cache, cut)
    assert cache.count() == 0


def test_another_teachers_answers_are_refused(tmp_path, exported):
    path, _ = exported
    with FakeOpenAIServer() as server:
        for other in (
            endpoint_teacher(server, tmp_path / "m.sqlite", model="other-model"),
            endpoint_teacher(server, tmp_path / "p.sqlite", prompt="reference"),
        ):
            with pytest.raises(JudgmentsFileError, match=r"another teacher \(openai fake-model, compact prompt"):
                other.import_judgments(path)
            assert other.cache.count() == 0


def test_cli_export_and_import(tmp_path, exported, capsys):
    path, _ = exported
    assert main(["-q", "judgments", "import", str(path), "--cache", str(tmp_path / "run")]) == 0
    assert "5 judgments of fake-model" in capsys.readouterr().out
    assert JudgmentCache(tmp_path / "run" / "teacher_cache.sqlite").count() == PAIRS
    again = tmp_path / "again.jsonl.gz"
    assert main(["-q", "judgments", "export", str(again), "--cache", str(tmp_path / "run")]) == 0
    assert gzip.decompress(again.read_bytes()) == gzip.decompress(path.read_bytes())
    bad = tmp_path / "bad.jsonl"
    bad.write_text("nope\n")
    assert main(["-q", "judgments", "import", str(bad), "--cache", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("st-lmtx: error: ") and "bad.jsonl:1: malformed JSON" in err and "Traceback" not in err


def test_a_cache_of_another_schema_is_refused_with_the_way_out(tmp_path):
    import sqlite3

    from st_lmtx.errors import CacheFileError
    from st_lmtx.teacher import JudgmentCache

    old = tmp_path / "old.sqlite"
    with sqlite3.connect(old) as conn:  # schema 1: no document hash, no seconds
        conn.execute(
            "CREATE TABLE judgments (key TEXT PRIMARY KEY, namespace TEXT, label TEXT, verdict TEXT, "
            "score REAL, graded INTEGER, answer TEXT, prompt_tokens INTEGER, completion_tokens INTEGER, "
            "created REAL)"
        )
    with pytest.raises(CacheFileError, match="older st-lmtx .*recover"):
        JudgmentCache(old)
