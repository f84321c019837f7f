"""A persistent cache of teacher answers: SQLite in WAL mode, one committed row per answer.

Every answer is committed the moment it arrives, so a process killed with SIGKILL loses at most the calls it
had in flight, and a second run, or a later curriculum round, asks only for pairs that are not here. Rows are
keyed by a hash of (namespace, document, label), where the namespace fingerprints what decides the answer
(backend, model name, prompt template, mode) and never holds a URL or an API key.
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
    created REAL NOT NULL
);
"""


@dataclass
class CachedAnswer:
    verdict: str
    score: float
    graded: bool
    answer: str | None


def namespace_of(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def pair_key(namespace: str, doc: str, label: str) -> str:
    return hashlib.sha256(f"{namespace}\0{doc}\0{label}".encode()).hexdigest()


class JudgmentCache:
    """``get``/``put`` teacher answers by (namespace, document, label). Safe to share between threads of one
    process and between processes (SQLite locking); a path of ``":memory:"`` keeps nothing on disk."""

    def __init__(self, path: str | os.PathLike = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode survives a killed process (only an OS crash could lose the last commits).
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)

    def register(self, config: dict) -> str:
        namespace = namespace_of(config)
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO namespaces (namespace, config) VALUES (?, ?)",
                (namespace, json.dumps(config, sort_keys=True)),
            )
        return namespace

    def get(self, namespace: str, doc: str, label: str) -> CachedAnswer | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT verdict, score, graded, answer FROM judgments WHERE key = ?",
                (pair_key(namespace, doc, label),),
            ).fetchone()
        return None if row is None else CachedAnswer(row[0], row[1], bool(row[2]), row[3])

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
    ) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    pair_key(namespace, doc, label),
                    namespace,
                    label,
                    verdict,
                    float(score),
                    int(graded),
                    answer,
                    int(prompt_tokens),
                    int(completion_tokens),
                    time.time(),
                ),
            )

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
