"""One answer cache, many processes, a busy machine: opening a cache that others are creating, opening or writing
waits for them; only real damage is called a broken file, and a cache still locked after the patience says so."""

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from st_lmtx.errors import CacheFileError, CacheLockedError
from st_lmtx.teacher.cache import JudgmentCache

WORKERS = 6
REPEATS = 30
ANSWERS = 10  # each worker's, per cache


@contextmanager
def busy_cores():
    """Every core kept busy by a process of its own, as on a loaded machine."""
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(max(2, os.cpu_count() or 2))]
    try:
        yield
    finally:
        for p in load:
            p.kill()
            p.wait()


def _open_and_write(folder: str, worker: int, barrier, failures) -> None:
    """A worker: at each repeat, released with the others at one instant, opens a new cache and writes to it."""
    for repeat in range(REPEATS):
        barrier.wait()
        try:
            with JudgmentCache(os.path.join(folder, f"repeat-{repeat}", "teacher_cache.sqlite")) as cache:
                namespace = cache.register({"backend": "stress"})
                for label in range(ANSWERS):
                    cache.put(namespace, f"document {worker}", f"label {label}", "yes", 0.5 + label / 100, True)
        except Exception as e:  # every failure is counted, not only the expected kind
            failures.put(f"repeat {repeat}, worker {worker}: {type(e).__name__}: {e}")


def test_processes_released_at_once_open_one_new_cache_under_load(tmp_path):
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch's threads
    barrier, failures = context.Barrier(WORKERS), context.Queue()
    workers = [
        context.Process(target=_open_and_write, args=(str(tmp_path), w, barrier, failures)) for w in range(WORKERS)
    ]
    started = time.monotonic()
    with busy_cores():
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=240)
    seconds = time.monotonic() - started
    assert all(w.exitcode == 0 for w in workers)
    problems = []
    while not failures.empty():
        problems.append(failures.get())
    assert problems == [], f"{len(problems)} of {WORKERS * REPEATS} opens failed: {problems[:5]}"
    for repeat in range(REPEATS):
        with sqlite3.connect(tmp_path / f"repeat-{repeat}" / "teacher_cache.sqlite") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            rows = db.execute("SELECT label, score FROM judgments").fetchall()
        assert len(rows) == WORKERS * ANSWERS  # every answer, exactly once (a pair is the primary key)
        assert sorted(set(rows)) == sorted({(f"label {i}", 0.5 + i / 100) for i in range(ANSWERS)})
    assert seconds < 60, f"{seconds:.0f} s"


def test_a_cache_locked_past_the_patience_says_so_and_not_that_it_is_broken(tmp_path, monkeypatch):
    path = tmp_path / "teacher_cache.sqlite"
    JudgmentCache(path).close()
    monkeypatch.setattr("st_lmtx.teacher.cache.PATIENCE", 0.5)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a long write
    try:
        started = time.monotonic()
        with pytest.raises(CacheLockedError, match="locked by another process") as caught:
            JudgmentCache(path)
        assert 0.4 < time.monotonic() - started < 10  # it waited for the patience, then gave up
        assert not isinstance(caught.value, CacheFileError) and "recover" not in str(caught.value)
        assert "judgments export" in str(caught.value) and caught.value.exit_code == 2
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with JudgmentCache(path) as cache:  # free again: it opens
        assert cache.count() == 0


def test_a_write_that_waits_past_the_patience_says_the_cache_is_locked(tmp_path, monkeypatch):
    monkeypatch.setattr("st_lmtx.teacher.cache.PATIENCE", 0.5)
    path = tmp_path / "teacher_cache.sqlite"
    with JudgmentCache(path) as cache:
        namespace = cache.register({"backend": "x"})
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(CacheLockedError, match="locked by another process"):
                cache.put(namespace, "a document", "a label", "yes", 0.9, True)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        cache.put(namespace, "a document", "a label", "yes", 0.9, True)
        assert cache.count() == 1


def test_real_damage_is_still_a_broken_file(tmp_path):
    path = tmp_path / "teacher_cache.sqlite"
    path.write_bytes(b"this is not a database, it is a text file of some length" * 20)
    with pytest.raises(CacheFileError, match="not a readable judgment cache"):
        JudgmentCache(path)
