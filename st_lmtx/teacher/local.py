"""The embedded default teacher: llama.cpp's OpenAI-compatible server, started and stopped for you.

`LocalTeacher` starts ``python -m llama_cpp.server`` (``pip install 'st-lmtx[local]'``) on 127.0.0.1
on a free port with a GGUF file (the default model from `st_lmtx.teacher.model_files` when none is
given), waits until it answers, and talks to it as an `OpenAITeacher`. The server stops on
`close`, at the end of a ``with`` block, on Ctrl-C and on errors; on Linux it is also told to die with
its parent, so a killed run leaves no server behind.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from st_lmtx.errors import TeacherConfigError, TeacherError
from st_lmtx.teacher.model_files import find_default_model
from st_lmtx.teacher.openai_teacher import OpenAITeacher

logger = logging.getLogger(__name__)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LlamaServer:
    """A ``llama_cpp.server`` process on 127.0.0.1; ``url`` is its OpenAI base URL once `start` returns."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        logits_all: bool = False,
        startup_timeout: float = 300.0,
        extra_args: list[str] | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise TeacherConfigError(f"GGUF model not found: {self.model_path}")
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.logits_all = logits_all
        self.startup_timeout = startup_timeout
        self.extra_args = extra_args or []
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def alias(self) -> str:
        return self.model_path.name

    def start(self) -> LlamaServer:
        try:
            import llama_cpp.server  # noqa: F401
        except ImportError as e:
            raise TeacherConfigError(
                "the local teacher needs llama-cpp-python's server: pip install 'st-lmtx[local]'"
            ) from e
        self.port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            self.alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(self.n_ctx),
            "--n_threads",
            str(self.n_threads),
            "--n_threads_batch",
            str(self.n_threads),
            "--logits_all",
            str(self.logits_all),
            *self.extra_args,
        ]
        self._log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
        logger.info("Starting llama.cpp server for %s on port %d", self.alias, self.port)
        self.process = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        atexit.register(self.stop)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise TeacherError(
                    f"the llama.cpp server exited with code {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise TeacherError(
            f"the llama.cpp server did not answer within {self.startup_timeout:.0f}s:\n{self.log_tail()}"
        )

    def log_tail(self, n: int = 20) -> str:
        if self._log is None:
            return ""
        try:
            return "\n".join(Path(self._log.name).read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self._log is not None:
            self._log.close()
            Path(self._log.name).unlink(missing_ok=True)
            self._log = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LocalTeacher(OpenAITeacher):
    """`OpenAITeacher` on a llama.cpp server that this object starts (at construction) and stops.

    Example::

        with LocalTeacher(cache="teacher.sqlite") as teacher:   # the default model, fetched beforehand
            result = teacher.judge(["Wheat exports rose ..."], [["Wheat", "Gold"]])
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        startup_timeout: float = 300.0,
        **kwargs: Any,
    ) -> None:
        path = model_path or find_default_model()
        if path is None:
            raise TeacherConfigError("no GGUF model given and the default is not fetched: run `st-lmtx fetch-model`")
        logprobs = kwargs.get("logprobs", True)
        # llama-cpp-python's server answers one request at a time and keeps the last prompt's prefix: requests
        # in flight together would only interleave documents and miss that prefix.
        if kwargs.get("concurrency") is None:
            kwargs["concurrency"] = 1
        self.server = LlamaServer(
            path, n_ctx=n_ctx, n_threads=n_threads, logits_all=logprobs, startup_timeout=startup_timeout
        )
        self.server.start()
        try:
            super().__init__(model=self.server.alias, base_url=self.server.url, **kwargs)
        except BaseException:
            self.server.stop()
            raise

    def close(self) -> None:
        self.server.stop()
