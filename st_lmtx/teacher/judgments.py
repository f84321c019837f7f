"""The teacher's answers as data: export a cache to gzip-compressed JSON lines, import them into another cache.

One JSON object a line, the columns of a ``datasets.Dataset`` (``load_judgments`` reads a file as one, and
``Dataset.push_to_hub`` publishes it):

=================  ===============================================================================
namespace          fingerprint of what decides the answers (16 hex digits of sha256 of ``teacher``)
teacher            that configuration as JSON: backend, model name, prompt template
doc_sha256         sha256 of the document text as the teacher's caller gave it (the text is not stored)
label              the label text
verdict            ``yes``, ``no`` or ``unparseable``
score              p(yes) for a graded teacher, else 1.0 / 0.0
graded             whether ``score`` is a probability
answer             the raw answer (a token or a short text)
prompt_tokens      tokens the answer cost (booked on one pair of a call)
completion_tokens
seconds            teacher seconds the answer cost when it was produced
=================  ===============================================================================

A file is checked whole before anything is written: a malformed line, a row whose namespace does not match its
configuration, or (when a teacher's namespace is given) answers of another teacher raise
`JudgmentsFileError` and import nothing. Answers already in the cache are kept. No URL or key is in a
file: the configuration never holds them.

Example::

    teacher = LlamaCppTeacher(cache="a.sqlite")
    teacher.judge(documents, candidates)
    export_judgments(teacher.cache, "judgments.jsonl.gz")

    other = LlamaCppTeacher(cache="b.sqlite")       # another machine
    other.import_judgments("judgments.jsonl.gz")    # checks that the answers are this teacher's
    other.judge(documents, candidates).usage.calls  # 0: every pair is answered from the file
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from st_lmtx.errors import JudgmentsFileError
from st_lmtx.inputs import read_jsonl
from st_lmtx.teacher.cache import JudgmentCache, namespace_of
from st_lmtx.teacher.prompts import layout_name

if TYPE_CHECKING:
    from datasets import Dataset

logger = logging.getLogger(__name__)

COLUMNS = (
    "namespace",
    "teacher",
    "doc_sha256",
    "label",
    "verdict",
    "score",
    "graded",
    "answer",
    "prompt_tokens",
    "completion_tokens",
    "seconds",
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass
class ImportReport:
    rows: int  # rows in the file
    added: int  # new in the cache
    models: list[str]  # teacher models found in the file
    failed: int = 0  # a batch job's lines that carry no answer (an error): asked again by the next run

    @property
    def already_present(self) -> int:
        return self.rows - self.added


def export_judgments(cache: JudgmentCache, path: str | os.PathLike, namespace: str | None = None) -> int:
    """Write the cache's answers (only one teacher configuration's, ``namespace``, when given) to ``path``
    (gzip-compressed when it ends in ``.gz``), atomically. Returns the number of rows written."""
    configs = cache.namespaces()
    rows = cache.rows(namespace)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # mtime=0: the same answers give the same bytes, so a committed file changes only when its answers do.
    with gzip.GzipFile(tmp, "wb", mtime=0) if path.suffix == ".gz" else open(tmp, "wb") as raw:
        for ns, digest, label, verdict, score, graded, answer, pt, ct, seconds in rows:
            record = {
                "namespace": ns,
                "teacher": json.dumps(configs.get(ns, {}), sort_keys=True),
                "doc_sha256": digest,
                "label": label,
                "verdict": verdict,
                "score": score,
                "graded": bool(graded),
                "answer": answer,
                "prompt_tokens": pt,
                "completion_tokens": ct,
                "seconds": round(seconds, 4),
            }
            raw.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    os.replace(tmp, path)
    return len(rows)


def read_judgments(path: str | os.PathLike) -> tuple[dict[str, dict], list[tuple]]:
    """Parse and check a judgments file; ``(configs by namespace, cache rows)``. Raises
    `JudgmentsFileError` naming the file and line of the first problem."""
    path = Path(path)
    configs: dict[str, dict] = {}
    rows = [_row(f"{path}:{n}", record, configs) for n, record in read_jsonl(path, error=JudgmentsFileError)]
    if not rows:
        raise JudgmentsFileError(f"{path}: holds no judgments")
    return configs, rows


def _row(where: str, record: dict[str, Any], configs: dict[str, dict]) -> tuple:
    missing = [c for c in COLUMNS if c not in record]
    if missing:
        raise JudgmentsFileError(f"{where}: missing {', '.join(missing)}")
    ns, digest, label, verdict, score = (record[k] for k in ("namespace", "doc_sha256", "label", "verdict", "score"))
    if ns not in configs:
        try:
            config = json.loads(record["teacher"])
        except (TypeError, json.JSONDecodeError):
            raise JudgmentsFileError(f"{where}: 'teacher' is not a JSON configuration") from None
        if not isinstance(config, dict) or namespace_of(config) != ns:
            raise JudgmentsFileError(
                f"{where}: namespace {ns!r} does not match its teacher configuration (edited or corrupted)"
            )
        configs[ns] = config
    problems = []
    if not isinstance(digest, str) or not _HEX64.match(digest):
        problems.append("doc_sha256 is not 64 hex digits")
    if not isinstance(label, str) or not label:
        problems.append("label is not a non-empty text")
    if verdict not in ("yes", "no", "unparseable"):
        problems.append(f"verdict {verdict!r} is not yes/no/unparseable")
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
        problems.append(f"score {score!r} is not in [0, 1]")
    if not isinstance(record["graded"], bool):
        problems.append("graded is not true/false")
    seconds = record["seconds"]
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        problems.append(f"seconds {seconds!r} is not a number >= 0")
    if problems:
        raise JudgmentsFileError(f"{where}: {'; '.join(problems)}")
    tokens = [
        record[k] if isinstance(record[k], int) and not isinstance(record[k], bool) else 0
        for k in ("prompt_tokens", "completion_tokens")
    ]
    return (ns, digest, label, verdict, float(score), record["graded"], record["answer"], *tokens, float(seconds))


def import_judgments(
    cache: JudgmentCache, path: str | os.PathLike, namespace: str | None = None, config: dict | None = None
) -> ImportReport:
    """Add a judgments file's answers to ``cache``, all or nothing. With a teacher's ``namespace`` (and its
    ``config``, for the message), every row must be that teacher's (same model and prompt): answers of another
    teacher would never be used, so they are an error, not a silent no-op."""
    try:
        configs, rows = read_judgments(path)
    except JudgmentsFileError as e:
        raise JudgmentsFileError(f"{e}; nothing was imported") from None
    models = sorted({str(c.get("model")) for c in configs.values()})
    if namespace is not None:
        foreign = set(configs) - {namespace}
        if foreign:
            theirs = sorted({_describe(configs[ns]) for ns in foreign})
            raise JudgmentsFileError(
                f"{path}: holds answers of another teacher ({'; '.join(theirs)}), not of this one "
                f"({_describe(config or {})}); nothing was imported"
            )
    added = cache.add_rows(configs, rows)
    logger.info("Imported %d judgments from %s (%d new, %d already cached)", len(rows), path, added, len(rows) - added)
    return ImportReport(rows=len(rows), added=added, models=models)


def load_judgments(path: str | os.PathLike) -> Dataset:
    """A checked judgments file as a ``datasets.Dataset`` (one row per answer)."""
    from datasets import Dataset

    configs, rows = read_judgments(path)
    columns: dict[str, list[Any]] = {c: [] for c in COLUMNS}
    for ns, digest, label, verdict, score, graded, answer, pt, ct, seconds in rows:
        for column, value in zip(
            COLUMNS,
            (
                ns,
                json.dumps(configs[ns], sort_keys=True),
                digest,
                label,
                verdict,
                score,
                graded,
                answer,
                pt,
                ct,
                seconds,
            ),
        ):
            columns[column].append(value)
    return Dataset.from_dict(columns)


def _describe(config: dict) -> str:
    prompt = config.get("prompt") or {}
    name = layout_name(prompt.get("pointwise")) + " prompt"
    return f"{config.get('backend')} {config.get('model')}, {name}"
