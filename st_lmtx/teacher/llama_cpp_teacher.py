"""An in-process teacher on ``llama_cpp.Llama``: graded p(yes) at the cost of a plain yes/no answer.

For each document the chat prompt up to the end of the document is evaluated once; for each shortlisted
label the KV cache is cut back to that prefix and only the label's suffix (about 40 tokens) is evaluated.
The verdict is the most likely next token (yes, no, or anything else: unparseable) and the score is
``P(yes) / (P(yes) + P(no))`` over the case and leading-space variants of both words, read straight from the
logits, with no sampling and no HTTP round trip.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from st_lmtx.teacher.base import Emit, Judgment, PendingDocument, Teacher, TeacherError, TeacherUsage
from st_lmtx.teacher.model_files import find_default_model
from st_lmtx.teacher.prompts import PromptTemplate

logger = logging.getLogger(__name__)

_YES = ("Yes", "yes", " Yes", " yes", "YES", " YES")
_NO = ("No", "no", " No", " no", "NO", " NO")


class LlamaCppTeacher(Teacher):
    """Judge pairs with a GGUF model loaded in this process (``pip install st-lmtx[local]``).

    Example::

        with LlamaCppTeacher(cache="teacher.sqlite") as teacher:
            result = teacher.judge(["Wheat exports rose ..."], [["Wheat", "Gold"]])
            result.judgments[0][0].score  # p(yes) for "Wheat"
    """

    backend = "llama-cpp"

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        prompt: PromptTemplate | None = None,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        **teacher_kwargs: Any,
    ) -> None:
        super().__init__(**teacher_kwargs)
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as e:
            raise ImportError("LlamaCppTeacher needs llama-cpp-python: pip install 'st-lmtx[local]'") from e
        path = model_path or find_default_model()
        if path is None:
            raise FileNotFoundError("no GGUF model given and the default is not fetched: run `st-lmtx fetch-model`")
        self.model_path = Path(path)
        self.prompt = prompt or PromptTemplate()
        if self.prompt.kind != "chat":
            raise ValueError("LlamaCppTeacher renders the model's chat template; use a chat PromptTemplate")
        self.llm = Llama(
            model_path=str(self.model_path),
            n_ctx=n_ctx,
            n_threads=n_threads or os.cpu_count(),
            logits_all=False,
            verbose=False,
        )
        self._n_ctx = n_ctx
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ValueError(f"{self.model_path.name} carries no chat template")
        self._formatter = Jinja2ChatFormatter(template=template, eos_token="", bos_token="")
        self._yes_ids = self._first_token_ids(_YES)
        self._no_ids = self._first_token_ids(_NO)

    @property
    def model_name(self) -> str:
        return self.model_path.name

    @property
    def graded(self) -> bool:
        return True

    def config(self) -> dict[str, Any]:
        return {**super().config(), "prompt": self.prompt.to_dict(), "mode": "pointwise"}

    def _first_token_ids(self, words: tuple[str, ...]) -> np.ndarray:
        ids = {self.llm.tokenize(w.encode(), add_bos=False, special=False)[0] for w in words}
        return np.array(sorted(ids))

    def _render(self, user: str) -> str:
        messages = ([{"role": "system", "content": self.prompt.system}] if self.prompt.system else []) + [
            {"role": "user", "content": user}
        ]
        return self._formatter(messages=messages).prompt

    def _split(self, doc: str, labels: list[str]) -> tuple[str, list[str]]:
        """The rendered prompt up to the end of the document, and each label's remainder."""
        truncated = self.prompt.truncate(doc)
        rendered = [self._render(self.prompt.render_pointwise(doc, label)) for label in labels]
        end = rendered[0].find(truncated) + len(truncated)
        prefix = rendered[0][:end]
        if not all(r.startswith(prefix) for r in rendered):
            raise TeacherError("the prompt template must be identical up to the end of the document")
        return prefix, [r[end:] for r in rendered]

    def _tokens(self, text: str, first: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=first, special=True)

    def _judge_documents(self, pending: list[PendingDocument], emit: Emit, run: TeacherUsage) -> None:
        for item in pending:
            labels = [item.labels[j] for j in item.positions]
            prefix, suffixes = self._split(item.doc, labels)
            prefix_tokens = self._tokens(prefix, first=True)
            suffix_tokens = [self._tokens(s, first=False) for s in suffixes]
            room = self._n_ctx - max(len(s) for s in suffix_tokens) - 1
            if len(prefix_tokens) > room:
                # Cut the document's tail: keep what fits (the template's start is at the front).
                prefix_tokens = prefix_tokens[:room]
            self.llm.reset()
            self.llm.eval(prefix_tokens)
            n_prefix = self.llm.n_tokens
            run.prompt_tokens += len(prefix_tokens)
            for j, tokens in zip(item.positions, suffix_tokens):
                self.check_budget(run)
                self.llm.n_tokens = n_prefix  # eval() drops the KV cache after n_tokens
                self.llm.eval(tokens)
                logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),))
                judgment = self._judgment(item.labels[j], logits)
                run.calls += 1
                run.prompt_tokens += len(tokens)
                emit(item, j, judgment, len(tokens), 1)

    def _judgment(self, label: str, logits: np.ndarray) -> Judgment:
        top = int(np.argmax(logits))
        verdict = "yes" if top in self._yes_ids else "no" if top in self._no_ids else "unparseable"
        shift = logits.max()
        p_yes = np.exp(logits[self._yes_ids] - shift).sum()
        p_no = np.exp(logits[self._no_ids] - shift).sum()
        score = float(p_yes / (p_yes + p_no)) if p_yes + p_no > 0 else (1.0 if verdict == "yes" else 0.0)
        token = self.llm.detokenize([top]).decode("utf-8", errors="replace")
        return Judgment(label, verdict, score, graded=True, answer=token)

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()
            self.llm = None
