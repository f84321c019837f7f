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
from dataclasses import dataclass
from pathlib import Path

from st_lmtx.errors import CacheFileError

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


@dataclass
class CachedAnswer:
    verdict: str
    score: float
    graded: bool
    answer: str | None
    seconds: float = 0.0  # teacher time the answer cost when it was produced


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
        try:
            self._open()
        except sqlite3.DatabaseError as e:  # not a database, a malformed page, a truncated file
            raise CacheFileError(
                f"{self.path} is not a readable judgment cache ({e}). Its answers may still be recovered with "
                f"`sqlite3 {self.path} .recover | sqlite3 recovered.sqlite` (then use that file); or move it away "
                "and the teacher asks again for what it held."
            ) from e

    def _open(self) -> None:
        self._conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        if self.path != ":memory:":
            # A cheap whole-file check: a cache broken by a crash or a full disk must not answer wrong or die
            # halfway through a round.
            problem = self._conn.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise sqlite3.DatabaseError(problem)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (only an OS crash could lose the last commits).
        self._conn.execute("PRAGMA synchronous=NORMAL")
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"schema version {version}, this st-lmtx reads {SCHEMA_VERSION}")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(judgments)")}
        if not {"doc_hash", "seconds"} <= columns:
            raise sqlite3.DatabaseError(f"a cache of an older st-lmtx (schema 1), this st-lmtx reads {SCHEMA_VERSION}")
        self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def register(self, config: dict) -> str:
        namespace = namespace_of(config)
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO namespaces (namespace, config) VALUES (?, ?)",
                (namespace, json.dumps(config, sort_keys=True)),
            )
        return namespace

    def get(self, namespace: str, doc: str, label: str) -> CachedAnswer | None:
        key = pair_key(namespace, doc_hash(doc), label)
        with self._lock:
            row = self._conn.execute(
                "SELECT verdict, score, graded, answer, seconds FROM judgments WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else CachedAnswer(row[0], row[1], bool(row[2]), row[3], row[4])

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
        digest = doc_hash(doc)
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE" + _INSERT_ROW,
                (
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
                ),
            )

    def namespaces(self) -> dict[str, dict]:
        """Every registered namespace and the teacher configuration it fingerprints."""
        with self._lock:
            rows = self._conn.execute("SELECT namespace, config FROM namespaces").fetchall()
        return {namespace: json.loads(config) for namespace, config in rows}

    def rows(self, namespace: str | None = None) -> list[tuple]:
        """``(namespace, doc_hash, label, verdict, score, graded, answer, prompt_tokens, completion_tokens,
        seconds)`` of every answer, ordered by namespace, document and label."""
        where = "namespace = ?" if namespace else "1"
        with self._lock:
            return self._conn.execute(
                "SELECT namespace, doc_hash, label, verdict, score, graded, answer, prompt_tokens, completion_tokens, "
                f"seconds FROM judgments WHERE {where} ORDER BY namespace, doc_hash, label",
                (namespace,) if namespace else (),
            ).fetchall()

    def add_rows(self, configs: dict[str, dict], rows: list[tuple]) -> int:
        """Insert `rows`-shaped answers and their namespaces in one transaction (all or nothing); an answer
        already here is kept. Returns how many were new."""
        now = time.time()
        with self._lock:
            before = self._conn.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO namespaces (namespace, config) VALUES (?, ?)",
                    [(ns, json.dumps(config, sort_keys=True)) for ns, config in configs.items()],
                )
                self._conn.executemany(
                    "INSERT OR IGNORE" + _INSERT_ROW,
                    [
                        (
                            pair_key(ns, dh, label),
                            ns,
                            label,
                            verdict,
                            float(score),
                            int(graded),
                            answer,
                            int(pt),
                            int(ct),
                            now,
                            dh,
                            float(sec),
                        )
                        for ns, dh, label, verdict, score, graded, answer, pt, ct, sec in rows
                    ],
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return self._conn.execute("SELECT COUNT(*) FROM judgments").fetchone()[0] - before

    def cost(self, namespace: str | None = None) -> tuple[int, float]:
        """``(answers, teacher seconds they cost when produced)``, of one namespace or all: the teacher time
        behind a cache, whichever runs, sessions or imports the answers came from."""
        where, params = ("WHERE namespace = ?", (namespace,)) if namespace else ("", ())
        with self._lock:
            n, seconds = self._conn.execute(f"SELECT COUNT(*), SUM(seconds) FROM judgments {where}", params).fetchone()
        return n, float(seconds or 0.0)

    def count(self, namespace: str | None = None) -> int:
        with self._lock:
            if namespace is None:
                return self._conn.execute("SELECT COUNT(*) FROM judgments").fetchone()[0]
            return self._conn.execute("SELECT COUNT(*) FROM judgments WHERE namespace = ?", (namespace,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> JudgmentCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
