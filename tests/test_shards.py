"""Several workers, one judging job: `st-lmtx judge --shard I/N`, and two processes writing one SQLite cache."""

import json
import os
import sqlite3
import subprocess
import sys
from collections import Counter

import pytest
from conftest import TOY_DOCS

from st_lmtx import InputError
from st_lmtx.cli import main
from st_lmtx.inputs import DocumentSet


def test_shards_are_disjoint_cover_everything_and_are_checked():
    docs = DocumentSet(texts=[f"document {i}" for i in range(10)])
    parts = [docs.shard(3, i).texts for i in range(3)]
    assert parts[0] == ["document 0", "document 3", "document 6", "document 9"]
    assert sorted(sum(parts, [])) == sorted(docs.texts)
    with pytest.raises(InputError, match="0..2"):
        docs.shard(3, 3)
    with pytest.raises(SystemExit):
        main(["judge", "--shard", "3/2"])
    with pytest.raises(SystemExit):
        main(["judge", "--shard", "two"])


def test_two_judge_processes_share_one_cache_and_lose_nothing(toy_lfxmc, tiny_model_dir, tmp_path):
    from fake_openai_server import FakeOpenAIServer

    cache = tmp_path / "cache"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")

    def judge(url, *extra):
        command = [
            sys.executable,
            "-m",
            "st_lmtx.cli",
            "-q",
            "judge",
            "--data",
            str(toy_lfxmc),
            "--model",
            tiny_model_dir,
            "--shortlist-k",
            "4",
            "--teacher",
            url,
            "--teacher-model",
            "fake-model",
            "--cache",
            str(cache),
            "--json",
            *extra,
        ]
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # A slow server and one request at a time per process: the two processes write the cache at the same time.
    with FakeOpenAIServer(delay=0.1, kind="plain") as server:  # a pair a request: many writes from each process
        workers = [judge(server.url, "--concurrency", "1", "--shard", f"{i}/2") for i in (1, 2)]
        outputs = [w.communicate(timeout=300) for w in workers]
        for w, (_, err) in zip(workers, outputs):
            assert w.returncode == 0, err[-2000:]
    summaries = [json.loads(out) for out, _ in outputs]
    assert [s["documents"] for s in summaries] == [4, 4] and sum(s["pairs"] for s in summaries) == len(TOY_DOCS) * 4
    asked = Counter((e["doc"], e["label"]) for e in server.log if "doc" in e)
    assert len(asked) == len(TOY_DOCS) * 4 and max(asked.values()) == 1
    assert server.max_in_flight == 2  # the two processes were judging (and writing answers) at the same time
    with sqlite3.connect(cache / "teacher_cache.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0] == len(TOY_DOCS) * 4
    # The merged job: a run over all the documents finds every answer in the one cache.
    with FakeOpenAIServer() as server:
        out, err = judge(server.url).communicate(timeout=300)
        assert json.loads(out)["calls"] == 0 and not [e for e in server.log if "doc" in e], err[-2000:]


def test_machines_judge_into_their_own_caches_and_a_third_run_merges_them(toy_lfxmc, tiny_model_dir, tmp_path, capsys):
    """Several machines: a SQLite file on a network file system is not safe to share, so each machine judges into
    its own cache; the exports, imported into the run that trains, cost it no teacher call."""
    from fake_openai_server import FakeOpenAIServer

    def judge(url, cache, *extra):
        argv = ["-q", "judge", "--data", str(toy_lfxmc), "--model", tiny_model_dir, "--shortlist-k", "4"]
        argv += ["--teacher", url, "--teacher-model", "fake-model", "--cache", str(cache), "--json", *extra]
        assert main(argv) == 0
        return json.loads(capsys.readouterr().out)

    with FakeOpenAIServer() as server:
        for i in (1, 2):
            assert judge(server.url, tmp_path / f"machine-{i}", "--shard", f"{i}/2")["pairs"] == len(TOY_DOCS) * 2
            export = ["-q", "judgments", "export", str(tmp_path / f"part{i}.jsonl.gz")]
            assert main([*export, "--cache", str(tmp_path / f"machine-{i}")]) == 0
            assert f"{len(TOY_DOCS) * 2} judgments from" in capsys.readouterr().out
        asked = len([e for e in server.log if "doc" in e])
        imports = [f"--import-judgments={tmp_path / f'part{i}.jsonl.gz'}" for i in (1, 2)]
        merged = judge(server.url, tmp_path / "trainer", *imports)
        assert merged["documents"] == len(TOY_DOCS) and merged["calls"] == 0
        assert len([e for e in server.log if "doc" in e]) == asked == len(TOY_DOCS) * 4  # nothing asked again
    with sqlite3.connect(tmp_path / "trainer" / "teacher_cache.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM judgments").fetchone()[0] == len(TOY_DOCS) * 4
