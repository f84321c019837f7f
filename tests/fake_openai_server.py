"""A real HTTP server on 127.0.0.1 that speaks enough of the OpenAI API to test teachers against, and
injects faults on demand.

It answers the pointwise prompts (paper and compact layouts) with "Yes" when any word of the tag (4+ letters)
occurs in the document, else "No"; p(yes) is 0.9 / 0.1 in the logprobs. Faults are consumed one per request, in
order: ``"429"`` (with Retry-After), ``"500"``, ``"400"``, ``"hang"`` (sleeps past the client's timeout), ``"drop"``
(closes the connection without answering), ``"malformed"`` (200 with a body that is not JSON),
``"nonsense"`` (a 200 answer that is neither yes nor no, unless a ``logit_bias`` forces yes or no), ``None``
(answer normally).

``kind`` is the server it behaves like: ``"vllm"`` (the default: ``/tokenize`` and ``/detokenize`` with chat
messages, a list of prompts in ``/v1/completions``, ``logit_bias``), ``"llama.cpp"`` (``/apply-template``,
``/tokenize``, llama.cpp's logprobs layout) or ``"plain"`` (the chat and completions endpoints only, as a hosted
API). Its chat template is Qwen's; its tokenizer is a toy (the answer words are one token
each, any other text a token a character). ``logprobs``: ``"yes"``, ``"ignore"`` (answers without them) or
``"refuse"`` (a 400 for a request that asks for them).

Capacity: by default every request takes ``delay`` seconds, however many are in flight. ``slots=1`` serves one
request at a time (llama-cpp-python's server). ``batch=N`` is a continuous-batching engine (vLLM): a step every
``delay`` seconds runs up to N waiting sequences (a prompt each), a request returns once all its prompts ran, and
a request that would make more than ``queue_limit`` sequences wait is refused with a 429.

``python tests/fake_openai_server.py --delay 0.05 [--batch 256 | --slots 1]`` serves until stdin closes, after
printing its URL: the server in a process of its own, as benchmarks measure a client.
"""

from __future__ import annotations

import argparse
import email.policy
import json
import math
import re
import sys
import tempfile
import threading
import time
from collections import deque
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# The paper's prompt and the compact layout (question first, then the document, then the tag).
POINTWISE_RES = (
    re.compile(r'document = "(.*)"\. Is the tag "(.*)" relevant', re.S),
    re.compile(r'Document: """(.*)"""\nTag: "(.*?)"', re.S),
    re.compile(r'<document>\n(.*)\n</document>\nTag: "(.*?)"', re.S),
)


# Qwen's chat template, as a chat endpoint renders a system and a user turn.
SYSTEM_TURN = "<|im_start|>system\n{}<|im_end|>\n"
USER_TURN = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
DEFAULT_SYSTEM = "You are a helpful assistant."
# The toy tokenizer's one-token words; any other character is a token of its own (2000 + its code point).
WORDS = {w: 1000 + i for i, w in enumerate(("Yes", "yes", " Yes", " yes", "YES", "No", "no", " No", " no", "NO"))}
YES_IDS = {i for w, i in WORDS.items() if w.strip().lower() == "yes"}
NO_IDS = {i for w, i in WORDS.items() if w.strip().lower() == "no"}


def render_chat(messages: list[dict]) -> str:
    system = next((m["content"] for m in messages if m["role"] == "system"), DEFAULT_SYSTEM)
    user = [m["content"] for m in messages if m["role"] == "user"][-1]
    return SYSTEM_TURN.format(system) + USER_TURN.format(user)


def user_turn(prompt: str) -> str:
    """The user's turn of a rendered chat prompt; a prompt that is not one, as it is."""
    match = re.fullmatch(
        r"<\|im_start\|>system\n.*?<\|im_end\|>\n<\|im_start\|>user\n(.*)<\|im_end\|>\n"
        r"<\|im_start\|>assistant\n",
        prompt,
        re.S,
    )
    return match.group(1) if match else prompt


def tokenize(text: str) -> list[int]:
    return [WORDS[text]] if text in WORDS else [2000 + ord(c) for c in text]


def detokenize(tokens: list[int]) -> str:
    words = {i: w for w, i in WORDS.items()}
    return "".join(words[t] if t in words else chr(t - 2000) for t in tokens)


class _Engine:
    """A continuous-batching engine: every ``step`` seconds, up to ``batch`` waiting sequences run."""

    def __init__(self, batch: int, step: float, queue_limit: int) -> None:
        self.batch, self.step, self.queue_limit = batch, step, queue_limit
        self.waiting: deque = deque()  # [remaining sequences, event, scheduled] a request, first come first served
        self.lock = threading.Lock()
        self.steps = self.sequences = 0
        threading.Thread(target=self._run, daemon=True).start()

    def submit(self, sequences: int) -> threading.Event | None:
        """An event set when the request's sequences ran; None when the queue is full (a 429)."""
        with self.lock:
            if sum(r[0] - r[2] for r in self.waiting) + sequences > self.queue_limit:
                return None
            request = [sequences, threading.Event(), 0]  # to run, done, running in this step
            self.waiting.append(request)
            return request[1]

    def _run(self) -> None:
        # A step schedules up to `batch` waiting sequences at its start and finishes them at its end; what arrives
        # meanwhile waits for the next step, as in vLLM's scheduler.
        while True:
            started = time.monotonic()
            with self.lock:
                room, scheduled = self.batch, []
                for request in self.waiting:
                    taken = min(room, request[0] - request[2])
                    request[2] += taken
                    room -= taken
                    scheduled.append((request, taken))
                    if not room:
                        break
            time.sleep(max(0.0, started + self.step - time.monotonic()))
            with self.lock:
                for request, taken in scheduled:
                    request[0] -= taken
                    request[2] -= taken
                    self.sequences += taken
                    if request[0] == 0:
                        self.waiting.remove(request)
                        request[1].set()
                self.steps += bool(scheduled) and room < self.batch


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 refuses connections when many clients connect at once

    def handle_error(self, request, client_address) -> None:
        # A client that gave up (its run failed, it was cancelled) closes its connections while answers are being
        # written: that is the client's business, not a fault of this server worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def relevant(doc: str, label: str) -> bool:
    words = [w for w in re.findall(r"[a-z]+", label.lower()) if len(w) >= 4]
    return any(w in doc.lower() for w in words)


class FakeOpenAIServer:
    def __init__(
        self,
        delay: float = 0.0,
        hang_seconds: float = 3.0,
        retry_after: str = "1",
        models: tuple[str, ...] = ("fake",),
        kind: str = "vllm",
        logprobs: str = "yes",
        slots: int | None = None,
        batch: int | None = None,
        queue_limit: int = 8192,
        port: int = 0,
    ) -> None:
        assert kind in ("vllm", "llama.cpp", "plain") and logprobs in ("yes", "ignore", "refuse")
        self.kind, self.logprobs = kind, logprobs
        self.slots = threading.Semaphore(slots) if slots else None
        self.engine = _Engine(batch, delay, queue_limit) if batch else None
        self.requests = 0  # requests answered (completions and chat)
        self.batch_api = FakeBatchAPI()
        self.models = list(models)  # what GET /models lists (empty: the route answers 404)
        self.models_status = 200  # another status: GET /models answers it (401: a refused key)
        self.faults: list[str | None] = []
        self.delay = delay
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.lock = threading.Lock()
        self.log: list[dict] = []  # one entry per request: time, kind, doc, label, outcome, headers
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests the server was handling at once
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm the body would wait for the client's
            # delayed ACK (tens of milliseconds a request). Servers built for this (uvicorn, vLLM) turn it off.
            disable_nagle_algorithm = True

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/stats"):  # for a benchmark, across processes
                    return self._json(200, server.stats())
                if "/batches/" in self.path or self.path.rstrip("/").endswith("/content"):
                    return server.batch_api.get(self)
                if self.path.rstrip("/").endswith("/models") and server.models_status != 200:
                    self._json(server.models_status, {"error": {"message": "refused"}})
                elif self.path.rstrip("/").endswith("/models") and server.models:
                    data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in server.models]
                    self._json(200, {"object": "list", "data": data})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                raw = self.rfile.read(length)
                if self.path.rstrip("/").endswith("/files"):
                    return server.batch_api.upload(self, raw)
                body = json.loads(raw or b"{}")
                if self.path.rstrip("/").endswith("/batches"):
                    return server.batch_api.create(self, body)
                if not self.path.rstrip("/").endswith("completions"):
                    return server.handle_extra(self, body)
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    server.handle(self, body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _json(self, status: int, payload, headers: dict | None = None) -> None:
                self._bytes(status, json.dumps(payload).encode(), "application/json", headers)

            def _bytes(self, status: int, data: bytes, content_type: str, headers: dict | None = None) -> None:
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = _Server(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ answers

    def answered(self, outcome: str = "ok") -> list[dict]:
        with self.lock:
            return [e for e in self.log if e["outcome"] == outcome]

    def stats(self) -> dict:
        with self.lock:
            stats = {"requests": self.requests, "pairs": len(self.log), "max_in_flight": self.max_in_flight}
        if self.engine:
            stats.update(steps=self.engine.steps, sequences=self.engine.sequences)
        return stats

    def handle_extra(self, h, body: dict) -> None:
        """The tokenizer and template routes of the server ``kind`` imitates; others answer 404."""
        route = h.path.rstrip("/")
        if self.kind == "vllm" and route == "/tokenize":
            text = render_chat(body["messages"]) if "messages" in body else body["prompt"]
            tokens = tokenize(text)
            return h._json(200, {"tokens": tokens, "count": len(tokens), "max_model_len": 32768})
        if self.kind == "vllm" and route == "/detokenize":
            return h._json(200, {"prompt": detokenize(body["tokens"])})
        if self.kind == "llama.cpp" and route == "/apply-template":
            return h._json(200, {"prompt": render_chat(body["messages"])})
        if self.kind == "llama.cpp" and route == "/tokenize":
            return h._json(200, {"tokens": tokenize(body["content"])})
        return h._json(404, {"error": {"message": "not found"}})

    def _wait(self, sequences: int) -> bool:
        """The time the request takes on this server's capacity; False when its queue is full."""
        if self.engine:
            done = self.engine.submit(sequences)
            if done is None:
                return False
            done.wait()
        elif self.slots:
            with self.slots:
                time.sleep(self.delay)
        elif self.delay:
            time.sleep(self.delay)
        return True

    def handle(self, h, body: dict) -> None:
        endpoint = "chat" if h.path.endswith("/chat/completions") else "completions"
        if endpoint == "chat":
            prompts = [body["messages"][-1]["content"]]
        else:
            prompt = body.get("prompt", "")
            prompts = prompt if isinstance(prompt, list) else [prompt]
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
        entries, matches = [], []
        for raw in prompts:
            text = user_turn(raw)
            entry = {
                "time": time.monotonic(),
                "endpoint": endpoint,
                "text": text,
                "templated": text != raw,
                "batched": len(prompts),
                "outcome": fault or "ok",
                "authorization": h.headers.get("authorization"),
                "model": body.get("model"),
                "max_tokens": body.get("max_tokens"),
            }
            match = next((m for m in (r.search(text) for r in POINTWISE_RES) if m), None)
            if match:
                entry["doc"], entry["label"] = match.group(1), match.group(2)
            entries.append(entry)
            matches.append(match)
        with self.lock:
            self.log.extend(entries)
        if fault is None and self.logprobs == "refuse" and body.get("logprobs"):
            return h._json(400, {"error": {"message": "logprobs are not supported"}})
        if not self._wait(len(prompts)):
            with self.lock:
                for entry in entries:
                    entry["outcome"] = "429"
            return h._json(429, {"error": {"message": "the queue is full"}}, {"retry-after": "0"})
        if fault == "429":
            return h._json(429, {"error": {"message": "rate limited"}}, {"retry-after": self.retry_after})
        if fault == "500":
            return h._json(500, {"error": {"message": "boom"}})
        if fault == "400":
            return h._json(400, {"error": {"message": "bad request"}})
        if fault == "hang":
            time.sleep(self.hang_seconds)
            try:
                return h._json(200, {"late": True})
            except OSError:
                return None
        if fault == "drop":
            h.close_connection = True
            h.connection.shutdown(2)
            return None
        if fault == "malformed":
            return h._bytes(200, b'{"id": "x", "choices": [ this is not json', "application/json")
        if not all(matches):
            return h._json(400, {"error": {"message": "unexpected prompt"}})
        forced = {int(k) for k, v in (body.get("logit_bias") or {}).items() if v > 0} == YES_IDS | NO_IDS
        want_logprobs = bool(body.get("logprobs")) and self.logprobs == "yes"
        one_token = body.get("max_tokens") == 1
        choices = [
            self._choice(n, endpoint, e, fault == "nonsense" and not forced, want_logprobs, one_token, body)
            for n, e in enumerate(entries)
        ]
        words = sum(len(e["text"].split()) for e in entries)
        usage = {"prompt_tokens": words, "completion_tokens": len(entries), "total_tokens": words + len(entries)}
        with self.lock:
            self.requests += 1
        if endpoint == "chat":
            payload = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body.get("model")}
        else:
            payload = {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": body.get("model")}
        h._json(200, {**payload, "choices": choices, "usage": usage})

    def _choice(self, n: int, endpoint: str, entry: dict, nonsense: bool, logprobs: bool, one_token: bool, body):
        yes = relevant(entry["doc"], entry["label"])
        answer = ("Maybe" if one_token else "Maybe, it depends.") if nonsense else ("Yes" if yes else "No")
        p = 0.9 if yes else 0.1
        top = [
            ("Yes", math.log(p * 0.8)),
            (" yes", math.log(p * 0.2)),
            ("No", math.log((1 - p) * 0.9)),
            ("no", math.log((1 - p) * 0.1)),
            ("Maybe", math.log(1e-4)),
        ]
        first = answer.split(",")[0].split()[0]
        content = [
            {
                "token": first,
                "logprob": -0.1,
                "bytes": None,
                "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top],
            }
        ]
        if endpoint == "chat":
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
            if logprobs:
                choice["logprobs"] = {"content": content}
            return choice
        templated = entry["templated"]
        choice = {
            "index": n,
            "finish_reason": "length",
            "text": answer if templated else " " + answer,
            "logprobs": None,
        }
        if logprobs and self.kind == "llama.cpp":
            choice["logprobs"] = {"content": content}
        elif logprobs:
            legacy = (
                top
                if templated
                else [(" Yes", math.log(p * 0.9)), (" yes", math.log(p * 0.1)), (" No", math.log(1 - p))]
            )
            choice["logprobs"] = {
                "tokens": [first if templated else " " + first],
                "token_logprobs": [-0.1],
                "top_logprobs": [dict(legacy[: int(body.get("logprobs") or 5)])],
                "text_offset": [0],
            }
        return choice


class FakeBatchAPI:
    """OpenAI's Batch API, as much as a client of it needs: upload a file, create a batch, retrieve it (it completes
    after ``polls`` looks, answered by `run_batch`), download its output. ``uploads`` counts the files uploaded."""

    def __init__(self, polls: int = 2) -> None:
        self.polls, self.uploads = polls, 0
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.looks: dict[str, int] = {}

    def upload(self, h, raw: bytes) -> None:
        message = BytesParser(policy=email.policy.default).parsebytes(
            b"Content-Type: " + h.headers["content-type"].encode() + b"\r\n\r\n" + raw
        )
        data = next(
            p.get_payload(decode=True)
            for p in message.iter_parts()
            if p.get_param("name", header="content-disposition") == "file"
        )
        self.uploads += 1
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = data
        h._json(
            200,
            {
                "id": file_id,
                "object": "file",
                "bytes": len(data),
                "created_at": 0,
                "filename": "requests.jsonl",
                "purpose": "batch",
                "status": "processed",
            },
        )

    def create(self, h, body: dict) -> None:
        batch_id = f"batch_{len(self.batches) + 1}"
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": body["completion_window"],
            "status": "validating",
            "created_at": 0,
            "output_file_id": None,
            "error_file_id": None,
        }
        self.looks[batch_id] = 0
        h._json(200, self.batches[batch_id])

    def get(self, h) -> None:
        parts = h.path.rstrip("/").split("/")
        if parts[-1] == "content":
            return h._bytes(200, self.files[parts[-2]], "application/octet-stream")
        batch = self.batches[parts[-1]]
        self.looks[batch["id"]] += 1
        if batch["status"] != "completed" and self.looks[batch["id"]] >= self.polls:
            with tempfile.TemporaryDirectory() as tmp:
                requests, output = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
                requests.write_bytes(self.files[batch["input_file_id"]])
                run_batch(requests, output)
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = output.read_bytes()
            batch.update(status="completed", output_file_id=file_id)
        elif batch["status"] != "completed":
            batch["status"] = "in_progress"
        h._json(200, batch)


def run_batch(requests: str | Path, output: str | Path, failing: tuple[int, ...] = ()) -> int:
    """A batch engine (OpenAI's Batch API, vLLM's run_batch): reads request lines, writes an output line each,
    answered as this server's chat endpoint answers (the lines numbered in ``failing`` fail instead). Returns the
    lines answered."""
    answerer = FakeOpenAIServer.__new__(FakeOpenAIServer)  # its answers only: no socket
    answerer.kind = "plain"
    out = []
    for n, line in enumerate(Path(requests).read_text(encoding="utf-8").splitlines()):
        request = json.loads(line)
        body = request["body"]
        text = body["messages"][-1]["content"]
        match = next(m for m in (r.search(text) for r in POINTWISE_RES) if m)
        entry = {"doc": match.group(1), "label": match.group(2), "templated": False}
        result = {"id": f"batch_req_{n}", "custom_id": request["custom_id"], "response": None, "error": None}
        if n in failing:
            result["error"] = {"code": "server_error", "message": "the engine failed on this request"}
        else:
            choice = answerer._choice(
                0, "chat", entry, False, bool(body.get("logprobs")), body["max_tokens"] == 1, body
            )
            words = len(text.split())
            completion = {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [choice],
            }
            completion["usage"] = {"prompt_tokens": words, "completion_tokens": 1, "total_tokens": words + 1}
            result["response"] = {"status_code": 200, "request_id": f"req-{n}", "body": completion}
        out.append(json.dumps(result))
    Path(output).write_text("".join(line + "\n" for line in out), encoding="utf-8")
    return len(out) - len(failing)


def main() -> None:
    parser = argparse.ArgumentParser(description="the fake OpenAI-compatible server, until stdin closes")
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--kind", default="vllm", choices=("vllm", "llama.cpp", "plain"))
    parser.add_argument("--slots", type=int, default=None)
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--queue-limit", type=int, default=8192)
    args = parser.parse_args()
    server = FakeOpenAIServer(
        delay=args.delay, kind=args.kind, slots=args.slots, batch=args.batch, queue_limit=args.queue_limit
    )
    with server:
        print(server.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
