"""Judging as a batch job: request lines for the pairs not cached, a batch engine's output back into the cache, and a
training run that stops for each round's batch and resumes, repeating nothing."""

import json
from collections import Counter

import pytest
from conftest import TOY_DOCS
from fake_openai_server import FakeOpenAIServer, run_batch

from st_lmtx.cli import main
from st_lmtx.errors import BatchPending
from st_lmtx.teacher import BatchTeacher, JudgmentCache, OpenAITeacher, import_output
from st_lmtx.teacher.batch_files import parse_custom_id

DOCS = [f"Document {i}: wheat exports rose and gold prices fell." for i in range(5)]
LABELS = ["Wheat", "Gold", "Coffee"]


def test_requests_round_trip_through_a_batch_engine_as_the_online_teacher_answers(tmp_path):
    cache = JudgmentCache(tmp_path / "batch.sqlite")
    teacher = BatchTeacher("fake-model", tmp_path / "batches", cache=cache, show_progress_bar=False)
    with pytest.raises(BatchPending, match=r"15 pairs wait for a batch job, written to .*requests-.*\.jsonl") as e:
        teacher.judge(DOCS, [LABELS] * len(DOCS))
    assert e.value.exit_code == 3
    (requests,) = (tmp_path / "batches").glob("requests-*.jsonl")
    lines = [json.loads(line) for line in requests.read_text().splitlines()]
    assert len(lines) == 15 and {line["url"] for line in lines} == {"/v1/chat/completions"}
    assert all(line["body"]["max_tokens"] == 1 and line["body"]["logprobs"] for line in lines)
    assert {parse_custom_id(line["custom_id"])[2] for line in lines} == set(LABELS)
    # The engine answers all but one line; the import takes the answers, the failed line is asked again next time.
    assert run_batch(requests, tmp_path / "out.jsonl", failing=(4,)) == 14
    report = import_output(cache, tmp_path / "out.jsonl")
    assert (report.rows, report.added, report.failed) == (14, 14, 1)
    with pytest.raises(BatchPending, match="1 pairs wait"):
        teacher.judge(DOCS, [LABELS] * len(DOCS))
    (again,) = set((tmp_path / "batches").glob("requests-*.jsonl")) - {requests}
    run_batch(again, tmp_path / "out2.jsonl")
    assert import_output(cache, tmp_path / "out2.jsonl").added == 1
    batch = teacher.judge(DOCS, [LABELS] * len(DOCS))
    assert batch.usage.cache_hits == 15 and batch.usage.calls == 0
    # The same model online answers the same, from the same cache namespace: it asks nothing.
    with FakeOpenAIServer() as server:
        online = OpenAITeacher("fake-model", base_url=server.url, cache=cache, show_progress_bar=False)
        assert online.namespace == teacher.namespace
        assert online.judge(DOCS, [LABELS] * len(DOCS)).usage.calls == 0 and not server.log
    with FakeOpenAIServer() as server:  # and fresh, it gives the very answers the batch gave
        fresh = OpenAITeacher("fake-model", base_url=server.url, show_progress_bar=False).judge(DOCS, [LABELS] * 5)
    assert [[(j.verdict, round(j.score, 6)) for j in row] for row in fresh.judgments] == [
        [(j.verdict, round(j.score, 6)) for j in row] for row in batch.judgments
    ]


def test_judge_writes_requests_and_judgments_import_reads_the_output(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    def judge(*extra):
        argv = ["-q", "judge", "--data", str(toy_lfxmc), "--model", tiny_model_dir, "--shortlist-k", "3"]
        return main([*argv, "--teacher", f"batch:{tmp_path / 'b'}", "--teacher-model", "fake-model", *extra])

    requests = tmp_path / "requests.jsonl"
    assert judge("--cache", str(tmp_path / "c"), "--write-requests", str(requests)) == 0
    assert "24 pairs not in the cache" in capsys.readouterr().out
    run_batch(requests, tmp_path / "out.jsonl")
    assert main(["-q", "judgments", "import", str(tmp_path / "out.jsonl"), "--cache", str(tmp_path / "c")]) == 0
    assert "24 judgments of fake-model from" in capsys.readouterr().out
    assert judge("--cache", str(tmp_path / "c"), "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["calls"] == 0 and summary["cache_hits"] == len(TOY_DOCS) * 3 and summary["graded"] is True
    # Output of another cache's teacher is refused whole, naming the way out.
    assert main(["-q", "judgments", "import", str(tmp_path / "out.jsonl"), "--cache", str(tmp_path / "other")]) == 2
    assert "import into the cache the requests were written from" in capsys.readouterr().err


def test_a_training_run_stops_for_each_batch_and_resumes_repeating_nothing(
    toy_lfxmc, tiny_model_dir, tmp_path, capsys
):
    out, batches = tmp_path / "run", tmp_path / "batches"
    argv = ["-q", "train", "--data", str(toy_lfxmc), "--model", tiny_model_dir, "--output-dir", str(out)]
    argv += ["--teacher", f"batch:{batches}", "--teacher-model", "fake-model", "--max-rounds", "2"]
    argv += ["--shortlist-k", "3", "--batch-size", "4", "--dev-size", "4"]
    asked: Counter = Counter()
    batches_run = 0
    for _ in range(10):
        code = main(argv)
        err = capsys.readouterr().err
        if code == 0:
            break
        assert code == 3 and "wait for a batch job" in err and "st-lmtx judgments import" in err
        newest = max(batches.glob("requests-*.jsonl"), key=lambda p: p.stat().st_mtime)
        asked.update(json.loads(line)["custom_id"] for line in newest.read_text().splitlines())
        run_batch(newest, tmp_path / "out.jsonl")
        batches_run += 1
        assert main(["-q", "judgments", "import", str(tmp_path / "out.jsonl"), "--cache", str(out)]) == 0
    assert code == 0 and (out / "lmtx_run.json").exists()
    # Round 0's dev judging, round 1's shortlist and dev, round 2's: each a batch; no pair written to a batch twice.
    assert batches_run >= 3 and max(asked.values()) == 1


def test_submit_openai_runs_the_batch_api_and_a_rerun_waits_for_the_same_batch(tmp_path, monkeypatch):
    from st_lmtx.teacher import batch_files

    def teacher(server):
        return BatchTeacher(
            "fake-model",
            tmp_path / "batches",
            submit="openai",
            base_url=server.url,
            poll_seconds=0.01,
            cache=tmp_path / "c.sqlite",
            show_progress_bar=False,
        )

    with FakeOpenAIServer() as server:
        server.batch_api.polls = 3

        def dies(seconds):  # the process dies while it waits for the batch
            raise KeyboardInterrupt

        monkeypatch.setattr(batch_files.time, "sleep", dies)
        with pytest.raises(KeyboardInterrupt):
            teacher(server).judge(DOCS, [LABELS] * len(DOCS))
        assert server.batch_api.uploads == 1 and len(list((tmp_path / "batches").glob("*.batch.json"))) == 1
        monkeypatch.undo()
        result = teacher(server).judge(DOCS, [LABELS] * len(DOCS))  # the rerun waits for the same batch
        assert server.batch_api.uploads == 1 and len(server.batch_api.batches) == 1
        assert result.usage.pairs == 15 and all(j.graded for row in result.judgments for j in row)
        assert teacher(server).judge(DOCS, [LABELS] * len(DOCS)).usage.cache_hits == 15
        assert not [e for e in server.log if "doc" in e]  # nothing went to the online endpoint
    with FakeOpenAIServer() as server:
        online = OpenAITeacher("fake-model", base_url=server.url, show_progress_bar=False).judge(DOCS, [LABELS] * 5)
    assert [[(j.verdict, round(j.score, 6)) for j in row] for row in online.judgments] == [
        [(j.verdict, round(j.score, 6)) for j in row] for row in result.judgments
    ]


def test_submit_is_for_a_batch_teacher(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    argv = ["-q", "judge", "--data", str(toy_lfxmc), "--model", tiny_model_dir, "--teacher", "oracle"]
    assert main([*argv, "--submit", "openai"]) == 2
    assert "--submit is for a batch teacher" in capsys.readouterr().err
