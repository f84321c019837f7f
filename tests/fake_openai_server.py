"""A real HTTP server on 127.0.0.1 that speaks enough of the OpenAI API to test teachers against, and
injects faults on demand.

It answers the pointwise prompts (paper and compact layouts) with "Yes" when any word of the tag (4+ letters)
occurs in the document, else "No"; p(yes) is 0.9 / 0.1 in the logprobs. Faults are consumed one per request, in
order: ``"429"`` (with Retry-After), ``"500"``, ``"400"``, ``"hang"`` (sleeps past the client's timeout), ``"drop"``
(closes the connection without answering), ``"malformed"`` (200 with a body that is not JSON),
``"nonsense"`` (a 200 answer that is neither yes nor no), ``None`` (answer normally).
"""

from __future__ import annotations

import json
import math
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The paper's prompt and the compact layout (question first, then the document, then the tag).
POINTWISE_RES = (
    re.compile(r'document = "(.*)"\. Is the tag "(.*)" relevant', re.S),
    re.compile(r'Document: """(.*)"""\nTag: "(.*?)"', re.S),
    re.compile(r'<document>\n(.*)\n</document>\nTag: "(.*?)"', re.S),
)


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
    ) -> None:
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

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models") and server.models_status != 200:
                    self._json(server.models_status, {"error": {"message": "refused"}})
                elif self.path.rstrip("/").endswith("/models") and server.models:
                    data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in server.models]
                    self._json(200, {"object": "list", "data": data})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server.lock:
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    server.handle(self, body)
                finally:
                    with server.lock:
                        server.in_flight -= 1

            def _json(self, status: int, payload, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = _Server(("127.0.0.1", 0), Handler)
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

    def handle(self, h, body: dict) -> None:
        endpoint = "chat" if h.path.endswith("/chat/completions") else "completions"
        text = body["messages"][-1]["content"] if endpoint == "chat" else body.get("prompt", "")
        with self.lock:
            fault = self.faults.pop(0) if self.faults else None
        entry = {
            "time": time.monotonic(),
            "endpoint": endpoint,
            "text": text,
            "outcome": fault or "ok",
            "authorization": h.headers.get("authorization"),
            "model": body.get("model"),
        }
        match = next((m for m in (r.search(text) for r in POINTWISE_RES) if m), None)
        if match:
            entry["doc"], entry["label"] = match.group(1), match.group(2)
        with self.lock:
            self.log.append(entry)
        if self.delay:
            time.sleep(self.delay)
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
            data = b'{"id": "x", "choices": [ this is not json'
            h.send_response(200)
            h.send_header("content-type", "application/json")
            h.send_header("content-length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            return None

        if not match:
            return h._json(400, {"error": {"message": "unexpected prompt"}})
        yes = relevant(entry["doc"], entry["label"])
        answer = "Maybe, it depends." if fault == "nonsense" else ("Yes" if yes else "No")
        p = 0.9 if yes else 0.1
        usage = {"prompt_tokens": len(text.split()), "completion_tokens": 1, "total_tokens": len(text.split()) + 1}
        want_logprobs = body.get("logprobs")
        if endpoint == "chat":
            choice = {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": answer}}
            if want_logprobs:
                first = answer.split(",")[0].split()[0]
                top = [
                    {"token": "Yes", "logprob": math.log(p * 0.8), "bytes": None},
                    {"token": " yes", "logprob": math.log(p * 0.2), "bytes": None},
                    {"token": "No", "logprob": math.log((1 - p) * 0.9), "bytes": None},
                    {"token": "no", "logprob": math.log((1 - p) * 0.1), "bytes": None},
                    {"token": "Maybe", "logprob": math.log(1e-4), "bytes": None},
                ]
                choice["logprobs"] = {
                    "content": [{"token": first, "logprob": -0.1, "bytes": None, "top_logprobs": top}]
                }
            payload = {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model"),
                "choices": [choice],
                "usage": usage,
            }
        else:
            choice = {"index": 0, "finish_reason": "stop", "text": " " + answer, "logprobs": None}
            if want_logprobs:
                choice["logprobs"] = {
                    "tokens": [" " + answer.split()[0]],
                    "token_logprobs": [-0.1],
                    "top_logprobs": [{" Yes": math.log(p * 0.9), " yes": math.log(p * 0.1), " No": math.log(1 - p)}],
                    "text_offset": [0],
                }
            payload = {
                "id": "cmpl-1",
                "object": "text_completion",
                "created": 0,
                "model": body.get("model"),
                "choices": [choice],
                "usage": usage,
            }
        h._json(200, payload)
