"""Prompts and answer parsing for the teacher.

A pointwise prompt has three parts: what comes before ``{doc}`` (the same for every pair: a scorer that keeps
it evaluates it once a run), the document up to ``{label}`` (the same for every label of a document: evaluated
once a document), and the label with the rest of the turn (evaluated once a pair). Templates must keep
``{doc}`` before ``{label}`` so that a document's labels share its prefix, in process and in a server's
prefix cache (llama.cpp, vLLM).

Two layouts ship (`PROMPTS`): ``compact`` (the default), the question asked before the document, so a
pair costs only its label and the end of the turn; and ``reference``, the paper's prompt (the question after the
document, so about 15 tokens of it are paid for every label).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Literal

from st_lmtx.teacher.injection import drop_instructions, neutralize

PAPER_PROMPT = 'document = "{doc}". Is the tag "{label}" relevant to the document? answer yes or no'
# The question first, the document, then only the label: the per-pair part is the label and the end of the turn.
COMPACT_PROMPT = 'Is the tag relevant to the document? Answer yes or no.\nDocument: """{doc}"""\nTag: "{label}"'
PROMPTS = {"compact": COMPACT_PROMPT, "reference": PAPER_PROMPT}
DEFAULT_PROMPT = "compact"

Verdict = Literal["yes", "no", "unparseable"]

_VERDICT_RE = re.compile(r"^\W*(?:answer\W*)?(yes|no)\b", re.IGNORECASE)


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt for the teacher.

    ``pointwise`` is used per (document, label) with ``{doc}`` and ``{label}``. ``kind`` picks the chat or the
    plain completions endpoint; for ``completion`` the prompt is sent as is followed by ``completion_suffix``.
    ``max_doc_words`` truncates documents (the teacher's context is small and cost grows with length).
    ``drop_instructions`` removes the sentences of a document that address the judge before it is judged
    (`drop_instructions`).
    """

    pointwise: str = PROMPTS[DEFAULT_PROMPT]
    kind: Literal["chat", "completion"] = "chat"
    system: str | None = None
    completion_suffix: str = "\nAnswer:"
    max_doc_words: int = 180
    drop_instructions: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("chat", "completion"):
            raise ValueError(f"kind must be 'chat' or 'completion', got {self.kind!r}")
        missing = [f for f in ("{doc}", "{label}") if f not in self.pointwise]
        if missing:
            raise ValueError(f"the pointwise template lacks {', '.join(missing)}")
        if self.pointwise.index("{doc}") > self.pointwise.index("{label}"):
            raise ValueError("the pointwise template must put {doc} first so the server's prefix cache works")

    @classmethod
    def named(cls, name: str, **kwargs) -> PromptTemplate:
        """A shipped layout by name (``reference``: the paper's prompt; ``compact``; ...), with other fields."""
        if name not in PROMPTS:
            raise ValueError(f"unknown prompt {name!r}: use one of {', '.join(PROMPTS)}")
        return cls(pointwise=PROMPTS[name], **kwargs)

    @property
    def name(self) -> str:
        """The shipped layout's name (``reference``, ``compact``, ...), else ``custom``."""
        return layout_name(self.pointwise)

    def pointwise_parts(self) -> tuple[str, str, str]:
        """The template around its fields: (before ``{doc}``, between ``{doc}`` and ``{label}``, after)."""
        head, rest = self.pointwise.split("{doc}", 1)
        middle, tail = rest.split("{label}", 1)
        return head, middle, tail

    def truncate(self, doc: str) -> str:
        """The document as the prompt carries it: its first ``max_doc_words`` words, with control-token and
        delimiter look-alikes broken up (`neutralize`)."""
        words = doc.split()
        return neutralize(" ".join(words[: self.max_doc_words]) if self.max_doc_words else " ".join(words))

    def render_pointwise(self, doc: str, label: str) -> str:
        """The user's turn for the pair."""
        return _fill(self.pointwise, doc=self.truncate(doc), label=label)

    def to_dict(self) -> dict:
        # Not drop_instructions: it changes only the text of the documents it touches, and the teacher's cache
        # keys hash the text it judges (Teacher.document_view), so the namespace need not.
        return {k: v for k, v in asdict(self).items() if k != "drop_instructions"}

    def view(self, doc: str) -> str:
        """The document the teacher judges: without the sentences that address the judge, when enabled."""
        return drop_instructions(doc) if self.drop_instructions else doc


def layout_name(pointwise: str | None) -> str:
    """The name of the shipped layout with this pointwise template, else ``custom``."""
    return next((n for n, text in PROMPTS.items() if text == pointwise), "custom")


def _fill(template: str, **values: str) -> str:
    # str.format would choke on braces inside documents; replace the fields one at a time instead.
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    return out


def parse_verdict(answer: str | None) -> Verdict:
    """ "Yes", "yes.", "**Yes**", "No, ..." are verdicts; anything else is unparseable, never a silent "no"."""
    if not answer:
        return "unparseable"
    match = _VERDICT_RE.match(answer)
    return match.group(1).lower() if match else "unparseable"  # type: ignore[return-value]


def answer_word(token: str) -> str:
    """A token as the word it spells: leading spaces and BPE space markers removed, lower case."""
    return token.replace("Ġ", " ").replace("▁", " ").strip().lower()


def p_yes(alternatives: Iterable[tuple[str, float]]) -> float | None:
    """P(yes) / (P(yes) + P(no)) from (token, logprob) alternatives at the answer position, summing case and
    leading-space variants; None when neither word is among them."""
    yes = no = 0.0
    for token, logprob in alternatives:
        word = answer_word(token)
        if word == "yes":
            yes += math.exp(logprob)
        elif word == "no":
            no += math.exp(logprob)
    if yes + no == 0.0:
        return None
    return yes / (yes + no)


def as_prompt(prompt: PromptTemplate | str | None) -> PromptTemplate:
    """A `PromptTemplate` from a template, a shipped layout's name, or None (the default layout)."""
    if prompt is None:
        return PromptTemplate()
    if isinstance(prompt, str):
        return PromptTemplate.named(prompt)
    return prompt
