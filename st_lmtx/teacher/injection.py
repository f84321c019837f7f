"""Documents are untrusted text inside the teacher's prompt: keep them from passing as the prompt's own structure,
and flag the ones that talk to the judge.

- `neutralize` breaks the strings that chat templates and tokenizers read as control tokens (``<|im_end|>``,
  ``<|eot_id|>``, ``</s>``, ``[INST]``, ``<<SYS>>``) and a fenced document's markers, so a document
  cannot end the user's turn or the document early, whatever the server's tokenizer does with special tokens.
- `looks_like_instructions` matches text that addresses a model ("ignore the question", "answer yes",
  a fake turn); the teacher counts such documents, and documents it said "yes" to for every label, in its usage.
- `drop_instructions` removes the sentences that match, so the judge reads what the document is about
  rather than what it asks: an instruction left in makes a small judge pick worse labels (BENCHMARKS.md,
  "Documents that instruct the teacher").
"""

from __future__ import annotations

import re

# <|im_end|>, <|eot_id|>, <|start_header_id|>, <|endoftext|>: every "<|...|>" special of ChatML-like templates.
_CONTROL = [
    (re.compile(r"<\|"), "< |"),
    (re.compile(r"\|>"), "| >"),
    (re.compile(r"</?s>"), lambda m: m.group(0).replace("<", "< ")),
    (re.compile(r"\[/?INST\]", re.IGNORECASE), lambda m: m.group(0).replace("[", "( ").replace("]", " )")),
    (re.compile(r"<</?SYS>>", re.IGNORECASE), lambda m: m.group(0).replace("<<", "< <").replace(">>", "> >")),
    (re.compile(r"</?\s*document\s*>", re.IGNORECASE), lambda m: m.group(0).replace("<", "< ")),
    (re.compile(r'"""'), '"'),  # the compact prompt's quotes around the document
]

INSTRUCTION_PATTERNS = [
    r"\bignore\b.{0,40}\b(instructions?|question|prompt|above|previous|rules?)\b",
    r"\b(answer|respond|reply|output)\s*(with\s*)?[\"']?(yes|no)\b",
    r"\b(disregard|forget)\b.{0,40}\b(instructions?|question|above|previous)\b",
    r"\byou are (now )?(an?|the) (assistant|ai|language model|judge|model)\b",
    r"\b(system|assistant|user)\s*:",
    r"<\|[a-z_]+\|>|\[/?INST\]|<</?SYS>>",
    r"\bnew (instructions?|task|question)\b",
    r"\bis (the|this|that) (tag|label)\b.{0,60}\brelevant\b",
    r"\btag\s*:\s*[\"']",
]
_INSTRUCTION_RE = re.compile("|".join(f"(?:{p})" for p in INSTRUCTION_PATTERNS), re.IGNORECASE | re.DOTALL)
# Sentence ends, line breaks and control tokens close a piece, kept with the piece before them.
_SENTENCE_RE = re.compile(r"[^\n]*?(?:[.!?]+(?=\s|$)|\n|<\|[a-z_]+\|>|$)\s*", re.IGNORECASE)


def neutralize(text: str) -> str:
    """``text`` with control-token look-alikes and prompt delimiters broken up (a space inserted): the words
    stay readable, no tokenizer or template reads them as structure."""
    for pattern, replacement in _CONTROL:
        text = pattern.sub(replacement, text)
    return text


def looks_like_instructions(text: str) -> bool:
    """Whether the document seems to address the model that judges it (see ``INSTRUCTION_PATTERNS``)."""
    return _INSTRUCTION_RE.search(text) is not None


def drop_instructions(text: str) -> str:
    """``text`` without its sentences (or lines) that address the model (`looks_like_instructions`); text
    with none is returned unchanged, the same string."""
    if not looks_like_instructions(text):
        return text
    kept = [s for s in _SENTENCE_RE.findall(text) if s and not looks_like_instructions(s)]
    return "".join(kept).strip()
