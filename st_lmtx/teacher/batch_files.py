"""Judging as a batch job on an engine of one's own: the pairs a teacher has not answered, as OpenAI batch request
lines; the engine's output lines, back into the teacher's cache.

OpenAI's Batch API (half the price of its online API) and vLLM's ``run_batch`` read the same request lines and write
the same output lines, and Ray Data's LLM processor maps a vLLM engine over such rows across a cluster
(docs/scale.md). A line asks one pair on the chat endpoint as `OpenAITeacher` would on a hosted API: the rendered
prompt, one answer token, its top logprobs (the answers are graded from them). Its ``custom_id`` names the pair,
``lmtx:<teacher namespace>:<sha256 of the document>:<label>``, so the output finds its cache rows in any order.

    write_requests(teacher, documents, candidates, "requests.jsonl")   # the pairs its cache does not hold
    # ... run the file through the Batch API or `python -m vllm.entrypoints.openai.run_batch` ...
    import_output(teacher.cache, "output.jsonl")                       # a rerun asks nothing of what came back
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import openai

from st_lmtx.errors import BatchPending, JudgmentsFileError, TeacherError
from st_lmtx.files import atomic_path, atomic_write_text
from st_lmtx.inputs import read_jsonl
from st_lmtx.teacher.base import Answered, Emit, Judgment, PendingDocument, TeacherUsage
from st_lmtx.teacher.cache import JudgmentCache, doc_hash
from st_lmtx.teacher.endpoints import resolve_api_key
from st_lmtx.teacher.judgments import ImportReport
from st_lmtx.teacher.openai_teacher import OpenAITeacher
from st_lmtx.teacher.request_shapes import ChatPair, MalformedResponse, ServerTraits, chat_answer

logger = logging.getLogger(__name__)

PREFIX = "lmtx"
ENDPOINT = "/v1/chat/completions"


def custom_id(namespace: str, doc: str, label: str) -> str:
    return f"{PREFIX}:{namespace}:{doc_hash(doc)}:{label}"


def parse_custom_id(text: Any) -> tuple[str, str, str] | None:
    """``(namespace, document sha256, label)`` of a pair's ``custom_id``; None for any other."""
    if not isinstance(text, str):
        return None
    parts = text.split(":", 3)
    if len(parts) != 4 or parts[0] != PREFIX or len(parts[2]) != 64:
        return None
    return parts[1], parts[2], parts[3]


def request_lines(teacher: OpenAITeacher, pending: Sequence[PendingDocument]) -> list[dict[str, Any]]:
    """One batch request line a pending pair, as the teacher would ask it on a chat endpoint."""
    shape = ChatPair(teacher.prompt, ServerTraits(), teacher._answer_tokens(ServerTraits()))
    logprobs = teacher.top_logprobs if teacher.logprobs else None
    lines = []
    for item in pending:
        for j in item.positions:
            label = item.labels[j]
            body = shape.body(teacher.model_name, shape.render(item.doc, label), logprobs, teacher.temperature)
            lines.append(
                {
                    "custom_id": custom_id(teacher.namespace, item.doc, label),
                    "method": "POST",
                    "url": ENDPOINT,
                    "body": body,
                }
            )
    return lines


def write_lines(lines: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """The request lines to ``path``, atomically (a half-written file never reaches a batch engine)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    return path


def write_requests(
    teacher: OpenAITeacher, documents: Sequence[str], candidates: Sequence[Sequence[str]], path: str | os.PathLike
) -> int:
    """Write the pairs of ``candidates`` that ``teacher``'s cache does not answer as batch request lines to
    ``path``; returns how many. A pair asked twice is written once."""
    pending = teacher._look_up(documents, candidates).pending
    lines = request_lines(teacher, pending)
    write_lines(lines, path)
    return len(lines)


def pending_file(directory: str | os.PathLike, lines: list[dict[str, Any]]) -> Path:
    """Where a set of request lines goes in a batch folder: named by the pairs it asks, so a rerun that still waits
    for the same answers writes the same file again rather than a second one."""
    digest = hashlib.sha256("\n".join(line["custom_id"] for line in lines).encode()).hexdigest()[:12]
    return Path(directory) / f"requests-{digest}.jsonl"


def is_batch_output(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds batch output lines (``custom_id`` and ``response``), not an exported judgments file."""
    for _, record in read_jsonl(Path(path), error=JudgmentsFileError):
        return "custom_id" in record and ("response" in record or "error" in record)
    return False


def read_output(path: str | os.PathLike, namespaces: Collection[str]) -> tuple[list[tuple], int]:
    """A batch job's output lines as cache rows (``JudgmentCache.rows``' layout), and how many lines failed (an
    error, a status other than 200). Every line must answer a pair of a teacher in ``namespaces``."""
    path = Path(path)
    rows, failed = [], 0
    for n, record in read_jsonl(path, error=JudgmentsFileError):
        pair = parse_custom_id(record.get("custom_id"))
        if pair is None:
            raise JudgmentsFileError(f"{path}:{n}: not a pair st-lmtx asked (custom_id); nothing was imported")
        namespace, digest, label = pair
        if namespace not in namespaces:
            raise JudgmentsFileError(
                f"{path}:{n}: answers a teacher this cache does not know: import into the cache the requests were "
                "written from (the run's output folder); nothing was imported"
            )
        response = record.get("response") or {}
        if record.get("error") or response.get("status_code") != 200:
            failed += 1
            continue
        body = response.get("body")
        try:
            answer = chat_answer(body)
        except MalformedResponse as e:
            raise JudgmentsFileError(f"{path}:{n}: {e}; nothing was imported") from None
        usage = body.get("usage") or {}
        tokens = (usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0)
        rows.append((namespace, digest, label, *answer.judged(), answer.text, *tokens, 0.0))
    return rows, failed


def import_output(cache: JudgmentCache, path: str | os.PathLike) -> ImportReport:
    """Add a batch job's answers (OpenAI Batch API or vLLM ``run_batch`` output lines) to ``cache``, all or nothing.
    Lines that failed are counted in ``failed`` and not imported: the next run asks them again. The cache must know
    the teacher the requests were written for (write and import with the same cache, or a run's output folder)."""
    configs = cache.namespaces()
    rows, failed = read_output(path, configs)
    used = {row[0] for row in rows}
    added = cache.add_rows({ns: configs[ns] for ns in used}, rows)
    models = sorted({str(configs[ns].get("model")) for ns in used})
    return ImportReport(rows=len(rows), added=added, models=models, failed=failed)


def submit_to_openai(client: openai.OpenAI, requests: Path, poll_seconds: float) -> Path:
    """Run a request file through OpenAI's Batch API: upload it, start the batch, wait for it, download its output
    beside the requests. The batch's id is kept beside them too (``<requests>.batch.json``), so a process that dies
    while it waits is followed by one that waits for the same batch: nothing is uploaded or paid twice."""
    state_path = requests.with_name(requests.stem + ".batch.json")
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    if "batch_id" not in state:
        with open(requests, "rb") as f:
            upload = client.files.create(file=f, purpose="batch")
        batch = client.batches.create(input_file_id=upload.id, endpoint=ENDPOINT, completion_window="24h")
        state = {"batch_id": batch.id, "input_file_id": upload.id}
        atomic_write_text(state_path, json.dumps(state))
        logger.info(
            "Batch %s submitted for %s (a rerun waits for it rather than submitting again)", batch.id, requests
        )
    while True:
        batch = client.batches.retrieve(state["batch_id"])
        if batch.status == "completed":
            break
        if batch.status in ("failed", "expired", "cancelled"):
            state_path.unlink(missing_ok=True)  # the next run submits the pairs again
            raise TeacherError(f"the batch {batch.id} ended {batch.status}: run the command again to submit anew")
        logger.info("Batch %s: %s", batch.id, batch.status)
        time.sleep(poll_seconds)
    output = requests.with_name(requests.stem + ".output.jsonl")
    lines = b""
    for file_id in (batch.output_file_id, batch.error_file_id):  # the failed lines come in a file of their own
        if file_id:
            lines += client.files.content(file_id).content
    with atomic_path(output) as tmp:
        tmp.write_bytes(lines)
    return output


class BatchTeacher(OpenAITeacher):
    """An endpoint teacher that asks by batch job: the pairs its cache cannot answer are written to ``directory`` as
    batch request lines, and the judging stops with `BatchPending`; once the output is imported, the same call
    finds every answer in the cache. With ``submit="openai"`` it runs them itself through OpenAI's Batch API (the
    ``base_url`` and key of any `OpenAITeacher`), waiting ``poll_seconds`` between looks, and goes on; a process
    that dies while it waits is followed by one that waits for the same batch. Its answers are an
    `OpenAITeacher`'s of the same model and prompt (one cache namespace), so a run can mix both.

    Example::

        teacher = BatchTeacher("gpt-4o-mini", "batches/", cache="teacher.sqlite")
        teacher.judge(docs, candidates)   # BatchPending: batches/requests-....jsonl
        # run it, then: import_output(teacher.cache, "output.jsonl"), and judge again
    """

    def __init__(
        self,
        model: str,
        directory: str | os.PathLike,
        submit: str | None = None,
        poll_seconds: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, **kwargs)
        if submit not in (None, "openai"):
            raise ValueError(f"submit must be None or 'openai'; got {submit!r}")
        self.directory, self.submit, self.poll_seconds = Path(directory), submit, poll_seconds

    def _judge_documents(self, pending: list[PendingDocument], emit: Emit, run: TeacherUsage) -> None:
        fit = self.pairs_that_fit(run)
        self.check_budget(run)  # raises when not one pair fits
        lines = request_lines(self, pending)[:fit]  # a budget's end: the rest waits for a run with a larger one
        path = write_lines(lines, pending_file(self.directory, lines))
        if self.submit != "openai":
            raise BatchPending(
                f"{len(lines):,} pairs wait for a batch job, written to {path}: run it (OpenAI's Batch API, or vLLM's "
                f"run_batch), import its output with `st-lmtx judgments import OUTPUT --cache {self.cache.path}`, "
                "then run this command again"
            )
        url = self.base_urls[0]
        with openai.OpenAI(base_url=url, api_key=resolve_api_key(self._api_key, url), timeout=self.timeout) as client:
            output = submit_to_openai(client, path, self.poll_seconds)
        rows, failed = read_output(output, {self.namespace})
        answers = {(digest, label): row for _, digest, label, *row in rows}
        answered = []
        for item in pending:
            for j in item.positions:
                row = answers.get((doc_hash(item.doc), item.labels[j]))
                if row is not None:
                    verdict, score, graded, text, prompt_tokens, completion_tokens, _ = row
                    judgment = Judgment(item.labels[j], verdict, score, graded, text)
                    answered.append(Answered(item, j, judgment, prompt_tokens, completion_tokens))
        run.calls += len(answered)
        if answered:
            emit(answered)
        if fit < sum(len(item.positions) for item in pending):
            self.check_budget(run, next_pairs=sys.maxsize)  # the budget is spent: stop, as an endpoint does
        if failed or len(answered) < len(lines):
            raise TeacherError(
                f"{len(lines) - len(answered):,} of the batch's {len(lines):,} pairs came back without an answer; "
                "the others are in the cache: run the command again to ask those"
            )
