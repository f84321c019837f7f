"""A persistent cache of teacher answers: SQLite in WAL mode, one committed row per answer.

Every answer is committed the moment it arrives, so a process killed with SIGKILL loses at most the calls it
had in flight, and a second run, or a later curriculum round, asks only for pairs that are not here. Rows are
keyed by a hash of (namespace, sha256 of the document, label), where the namespace fingerprints what decides the
answer (backend, model name, prompt template, mode) and never holds a URL or an API key. A row keeps the
document's hash (never its text), so the answers can be exported and imported as data
(`st_lmtx.teacher.judgments`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import tenacity

from st_lmtx.errors import CacheFileError, CacheLockedError

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (
    namespace TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS judgments (
    key TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    label TEXT NOT NULL,
    verdict TEXT NOT NULL,
    score REAL NOT NULL,
    graded INTEGER NOT NULL,
    answer TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    doc_hash TEXT NOT NULL,
    seconds REAL NOT NULL DEFAULT 0
);
"""
# 2: keys hash the document's sha256 (so rows can be imported without the text) and rows keep that hash, and
# the teacher seconds the answer cost (so a run resumed or fed from imported answers can tell what it cost).
SCHEMA_VERSION = 2
_INSERT_ROW = (
    " INTO judgments (key, namespace, label, verdict, score, graded, answer, prompt_tokens, "
    "completion_tokens, created, doc_hash, seconds) VALUES (" + ", ".join("?" * 12) + ")"
)


# How long a process waits, in all, for others that hold the cache's file before it gives up.
PATIENCE = 60.0
# SQLite's own wait for a lock, a try: short, so a wait it cannot do for us is retried sooner, and `PATIENCE`
# bounds the whole wait of any statement.
_BUSY_TIMEOUT = 1.0
# SQLITE_BUSY and SQLITE_LOCKED, and their extended codes (the low byte is the primary code).
_BUSY_CODES = (5, 6)


def _is_busy(error: BaseException) -> bool:
    """Whether SQLite refused for a lock another connection holds (never for a damaged file)."""
    if not isinstance(error, sqlite3.OperationalError):
        return False
    code = getattr(error, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in _BUSY_CODES
    return "locked" in str(error) or "busy" in str(error)


@dataclass
class CachedAnswer:
    verdict: str
    score: float
    graded: bool
    answer: str | None
    seconds: float = 0.0  # teacher time the answer cost when it was produced


def _row(
    namespace: str,
    digest: str,
    label: str,
    verdict: str,
    score: float,
    graded: bool,
    answer: str | None,
    prompt_tokens: int,
    completion_tokens: int,
    seconds: float,
) -> tuple:
    """A judgments row as `_INSERT_ROW` takes it, made now."""
    return (
        pair_key(namespace, digest, label),
        namespace,
        label,
        verdict,
        float(score),
        int(graded),
        answer,
        int(prompt_tokens),
        int(completion_tokens),
        time.time(),
        digest,
        float(seconds),
    )


def namespace_of(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def doc_hash(doc: str) -> str:
    return hashlib.sha256(doc.encode("utf-8")).hexdigest()


def pair_key(namespace: str, doc_sha256: str, label: str) -> str:
    return hashlib.sha256(f"{namespace}\0{doc_sha256}\0{label}".encode()).hexdigest()


class JudgmentCache:
    """``get``/``put`` teacher answers by (namespace, document, label). Safe to share between threads of one
    process and between processes (SQLite locking); a path of ``":memory:"`` keeps nothing on disk."""

    def __init__(self, path: str | os.PathLike = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        try:
            self._patiently(self._open)
        except sqlite3.DatabaseError as e:  # not a database, a malformed page, a truncated file
            if self._conn is not None:
                self._conn.close()
            raise CacheFileError(
                f"{self.path} is not a readable judgment cache ({e}). Its answers may still be recovered with "
                f"`sqlite3 {self.path} .recover | sqlite3 recovered.sqlite` (then use that file); or move it away "
                "and the teacher asks again for what it held."
            ) from e

    def _patiently(self, step: Callable[[], T]) -> T:
        """Run ``step``, again while another process holds the file, for up to `PATIENCE` seconds in all.

        SQLite's own busy timeout covers most waits, but not all: two connections that both hold a read lock and
        want to write (two processes opening one new cache: the WAL switch, the schema, ``user_version``) get
        "database is locked" at once, since one of them waiting for the other could never end. Then the whole
        step is tried again. A lock that outlasts the patience is a `CacheLockedError`, never a broken file.
        """
        try:  # the common case, without a retrying object's cost: every answer passes here
            return step()
        except sqlite3.OperationalError as e:
            if not _is_busy(e):
                raise
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_busy),
            stop=tenacity.stop_after_delay(PATIENCE),
            wait=tenacity.wait_random_exponential(multiplier=0.005, max=0.25),
            reraise=True,
        )
        try:
            return retrying(step)
        except sqlite3.OperationalError as e:
            if not _is_busy(e):
                raise
            raise CacheLockedError(
                f"{self.path} is locked by another process (still busy after {PATIENCE:.0f} s): wait for it to "
                "finish and run the command again; or give each process its own cache and merge them with "
                "`st-lmtx judgments export` and `--import-judgments`"
            ) from e

    def _open(self) -> None:
        if self._conn is not None:  # a try that met a lock: start over on a fresh connection
            self._conn.close()
        # A short busy timeout: a wait that SQLite cannot do for us (see `_patiently`) is retried sooner.
        self._conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            # A cheap whole-file check: a cache broken by a crash or a full disk must not answer wrong or die
            # halfway through a round.
            problem = self._conn.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise sqlite3.DatabaseError(problem)
            if self._conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # the mode is kept in the file
                self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (only an OS crash could lose the last commits).
        self._conn.execute("PRAGMA synchronous=NORMAL")
        # One write transaction for the schema: a process that finds the file new and one that made it meanwhile
        # cannot interleave their steps.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise sqlite3.DatabaseError(f"schema version {version}, this st-lmtx reads {SCHEMA_VERSION}")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._conn.execute(statement)
            columns = {row[1] for row in self._conn.execute("PRAGMA table_info(judgments)")}
            if not {"doc_hash", "seconds"} <= columns:
                raise sqlite3.DatabaseError(
                    f"a cache of an older st-lmtx (schema 1), this st-lmtx reads {SCHEMA_VERSION}"
                )
            if version != SCHEMA_VERSION:
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def _run(self, sql: str, params: tuple = ()) -> list[tuple]:
        """One statement (its own transaction), patiently; its rows."""

        def step() -> list[tuple]:
            with self._lock:
                return self._conn.execute(sql, params).fetchall()

        return self._patiently(step)

    def register(self, config: dict) -> str:
        namespace = namespace_of(config)
        self._run(
            "INSERT OR IGNORE INTO namespaces (namespace, config) VALUES (?, ?)",
            (namespace, json.dumps(config, sort_keys=True)),
        )
        return namespace

    def get(self, namespace: str, doc: str, label: str) -> CachedAnswer | None:
        return self.get_many(namespace, doc, [label]).get(label)

    def get_many(self, namespace: str, doc: str, labels: Sequence[str]) -> dict[str, CachedAnswer]:
        """The cached answers for ``doc`` and each of ``labels`` (one query), by label; missing labels are absent."""
        digest = doc_hash(doc)
        keys = {pair_key(namespace, digest, label): label for label in labels}
        found: dict[str, CachedAnswer] = {}
        marks = ", ".join("?" * len(keys))
        for key, verdict, score, graded, answer, seconds in self._run(
            f"SELECT key, verdict, score, graded, answer, seconds FROM judgments WHERE key IN ({marks})", tuple(keys)
        ):
            found[keys[key]] = CachedAnswer(verdict, score, bool(graded), answer, seconds)
        return found

    def put(
        self,
        namespace: str,
        doc: str,
        label: str,
        verdict: str,
        score: float,
        graded: bool,
        answer: str | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        seconds: float = 0.0,
    ) -> None:
        self.put_many(
            namespace, [(doc, label, verdict, score, graded, answer, prompt_tokens, completion_tokens, seconds)]
        )

    def put_many(self, namespace: str, answers: Sequence[tuple]) -> None:
        """Store answers that arrived together in one transaction: ``(doc, label, verdict, score, graded, answer,
        prompt_tokens, completion_tokens, seconds)`` each; a pair already here is replaced."""
        rows = [_row(namespace, doc_hash(doc), *rest) for doc, *rest in answers]

        self._patiently(
            lambda: self._transaction(lambda: self._conn.executemany("INSERT OR REPLACE" + _INSERT_ROW, rows))
        )

    def _transaction(self, work: Callable[[], T]) -> T:
        """``work`` in one write transaction (all or nothing), under the thread lock."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                result = work()
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            return result

    def namespaces(self) -> dict[str, dict]:
        """Every registered namespace and the teacher configuration it fingerprints."""
        rows = self._run("SELECT namespace, config FROM namespaces")
        return {namespace: json.loads(config) for namespace, config in rows}

    def rows(self, namespace: str | None = None) -> list[tuple]:
        """``(namespace, doc_hash, label, verdict, score, graded, answer, prompt_tokens, completion_tokens,
        seconds)`` of every answer, ordered by namespace, document and label."""
        where = "namespace = ?" if namespace else "1"
        return self._run(
            "SELECT namespace, doc_hash, label, verdict, score, graded, answer, prompt_tokens, completion_tokens, "
            f"seconds FROM judgments WHERE {where} ORDER BY namespace, doc_hash, label",
            (namespace,) if namespace else (),
        )

    def add_rows(self, configs: dict[str, dict], rows: list[tuple]) -> int:
        """Insert `rows`-shaped answers and their namespaces in one transaction (all or nothing); an answer
        already here is kept. Returns how many were new (counted inside the transaction: another process
        writing meanwhile does not change it)."""
        namespaces = [(ns, json.dumps(config, sort_keys=True)) for ns, config in configs.items()]
        new_rows = [_row(*r) for r in rows]

        def step() -> int:
            count = "SELECT COUNT(*) FROM judgments"
            before = self._conn.execute(count).fetchone()[0]
            self._conn.executemany("INSERT OR IGNORE INTO namespaces (namespace, config) VALUES (?, ?)", namespaces)
            self._conn.executemany("INSERT OR IGNORE" + _INSERT_ROW, new_rows)
            return self._conn.execute(count).fetchone()[0] - before

        return self._patiently(lambda: self._transaction(step))

    def cost(self, namespace: str | None = None) -> tuple[int, float]:
        """``(answers, teacher seconds they cost when produced)``, of one namespace or all: the teacher time
        behind a cache, whichever runs, sessions or imports the answers came from."""
        where, params = ("WHERE namespace = ?", (namespace,)) if namespace else ("", ())
        n, seconds = self._run(f"SELECT COUNT(*), SUM(seconds) FROM judgments {where}", params)[0]
        return n, float(seconds or 0.0)

    def count(self, namespace: str | None = None) -> int:
        if namespace is None:
            return self._run("SELECT COUNT(*) FROM judgments")[0][0]
        return self._run("SELECT COUNT(*) FROM judgments WHERE namespace = ?", (namespace,))[0][0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> JudgmentCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
